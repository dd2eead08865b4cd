"""Tables of driftloop.pipeline."""

from driftloop.store import METADATA

__all__ = ["METADATA"]
