"""Domains: the container of a tenant's profiles, object types, keys and encryption key."""
