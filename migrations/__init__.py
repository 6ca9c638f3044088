"""flowcli's Alembic migrations (shipped inside the wheel as ``flowcli.migrations``)."""
