"""Profiles: the unified standard profile of one customer, its keys, and search."""
