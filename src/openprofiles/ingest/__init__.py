"""The ingestion pipeline every record goes through: mapping, key resolution, dead-lettering."""
