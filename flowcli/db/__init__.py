"""Database layer: models, connections (SQLite pragmas), migrations and schema checks."""
