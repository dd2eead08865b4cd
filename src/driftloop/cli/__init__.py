"""The ``driftloop`` command line; it only parses arguments and calls the library."""

from __future__ import annotations

from driftloop.cli import project  # noqa: F401  (registers its commands)
from driftloop.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
