"""Tables of driftloop.monitors."""

from driftloop.store import METADATA

__all__ = ["METADATA"]
