"""Integrations (PutIntegration & co.), contact-centre instance association."""
