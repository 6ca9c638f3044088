"""Every revision id flowcli has shipped, oldest first, without importing Alembic.

A test holds this list equal to the migration scripts. Appending a revision means
appending here and moving ``HEAD_REVISION`` in flowcli.db.schema.
"""

KNOWN_REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006")
