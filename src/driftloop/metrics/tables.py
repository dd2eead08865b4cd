"""Tables of driftloop.metrics."""

from driftloop.store import METADATA

__all__ = ["METADATA"]
