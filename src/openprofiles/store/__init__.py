"""Storage: the only package that speaks SQL (SQLAlchemy Core on SQLite or PostgreSQL)."""
