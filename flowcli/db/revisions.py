"""Every revision id flowcli has shipped, oldest first, without importing Alembic.

A test holds this list equal to the migration scripts; appending a revision means
appending here (``HEAD_REVISION`` follows). ``VERSION_TABLE`` is flowcli's own Alembic
version table, apart from MRC's ``alembic_version`` on a database both use.
"""

KNOWN_REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006")
HEAD_REVISION = KNOWN_REVISIONS[-1]
VERSION_TABLE = "flowcli_alembic_version"
