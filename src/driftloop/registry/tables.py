"""Tables of driftloop.registry."""

from driftloop.store import METADATA

__all__ = ["METADATA"]
