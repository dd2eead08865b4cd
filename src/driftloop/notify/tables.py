"""Tables of driftloop.notify."""

from driftloop.store import METADATA

__all__ = ["METADATA"]
