"""The store's schema revisions (Alembic), shipped in the package and run programmatically.

``versions/`` holds one module per revision, named ``rNNNN_<what>.py`` with ``revision =
"NNNN"``; :data:`driftloop.database.core.REVISIONS` lists them in order (a test checks that it
matches). Revision 0001 is release 1's schema, frozen; each later one changes it. To add one,
copy the newest, set ``revision``/``down_revision``, write ``upgrade()`` (and ``downgrade()``)
with ``op`` and batch mode where SQLite must rebuild a table, change the component's
``tables.py`` the same way, and append the revision to ``REVISIONS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config

LOCATION = Path(__file__).resolve().parent
"""The Alembic script location: this package (``env.py``, ``versions/``)."""


def alembic_config(connection: Any = None) -> Config:
    """An Alembic config for the packaged scripts, without an ini file; ``connection`` (a
    SQLAlchemy connection inside a transaction) is the one ``env.py`` migrates."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_revisions() -> tuple[str, ...]:
    """The revisions of ``versions/``, oldest first (a single line of history)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return tuple(reversed([s.revision for s in script.walk_revisions("base", "heads")]))


def upgrade(connection: Any, target: str = "head") -> None:
    """Run the revisions up to ``target`` on ``connection`` (its transaction, its lock)."""
    from alembic import command

    command.upgrade(alembic_config(connection), target)


def stamp(connection: Any, revision: str) -> None:
    """Record ``revision`` as applied without running anything."""
    from alembic import command

    command.stamp(alembic_config(connection), revision)


def downgrade(connection: Any, target: str) -> None:
    """Run the revisions' ``downgrade()`` down to ``target`` (``base``: nothing left)."""
    from alembic import command

    command.downgrade(alembic_config(connection), target)
