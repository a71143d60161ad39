"""Object types: the mappings that turn a source record into profile fields and keys (spec §1-2)."""
