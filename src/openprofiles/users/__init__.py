"""Web users (administrators and agents) and their sign-in sessions."""
