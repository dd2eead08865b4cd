"""Alembic's environment for driftloop's store: runs the revisions on the connection that
:meth:`driftloop.database.core.Database.upgrade` passes in ``config.attributes["connection"]``,
inside its transaction and under its lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL). There is no ``alembic.ini``: use ``driftloop db upgrade``, not the alembic command.
"""

from __future__ import annotations

from alembic import context

from driftloop.database.core import METADATA, VERSION_TABLE, import_table_modules
from driftloop.errors import ConfigError

connection = context.config.attributes.get("connection")
if connection is None:
    raise ConfigError(
        "driftloop's migrations run on a connection driftloop opens: use 'driftloop db upgrade' "
        "(or Database.upgrade()), not the alembic command"
    )
import_table_modules()
context.configure(
    connection=connection,
    target_metadata=METADATA,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
