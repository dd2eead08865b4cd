"""The ``driftloop`` command line; it only parses arguments and calls the library."""

from __future__ import annotations

from driftloop.cli import (
    data,  # noqa: F401  (registers its commands)
    db,  # noqa: F401  (registers its commands)
    demo,  # noqa: F401  (registers its commands)
    ingest,  # noqa: F401  (registers its commands)
    loop,  # noqa: F401  (registers its commands)
    models,  # noqa: F401  (registers its commands)
    monitors,  # noqa: F401  (registers its commands)
    notify,  # noqa: F401  (registers its commands)
    project,  # noqa: F401  (registers its commands)
    report,  # noqa: F401  (registers its commands)
    serve,  # noqa: F401  (registers its commands)
    train,  # noqa: F401  (registers its commands)
)
from driftloop.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
