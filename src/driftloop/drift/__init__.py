"""driftloop.drift."""
