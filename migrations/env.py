"""Alembic environment for flowcli.

flowcli builds its Alembic Config in code (flowcli.db.migrate) and hands over an open
connection, so nothing here reads alembic.ini or the working directory. The version
table is flowcli's own, ``flowcli_alembic_version``: a host application's
``alembic_version`` is never read or written.
"""

from __future__ import annotations

from alembic import context

from flowcli.db.revisions import VERSION_TABLE
from flowcli.db.tables import METADATA, include_owned_name

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - flowcli always passes a connection
    raise RuntimeError("flowcli migrations must be run through flowcli.db.migrate")

context.configure(
    connection=connection,
    target_metadata=METADATA,
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things; batch mode rebuilds tables when needed.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # One transaction per migration, so a failure leaves the previous revision intact.
    transaction_per_migration=True,
    include_name=include_owned_name,
)

with context.begin_transaction():
    context.run_migrations()
