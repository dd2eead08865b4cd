"""Tables of driftloop.serving."""

from driftloop.store import METADATA

__all__ = ["METADATA"]
