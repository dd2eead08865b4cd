"""driftloop.registry."""
