"""Connectors that bring records in from outside systems (streams)."""
