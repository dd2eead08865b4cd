"""driftloop.monitors."""
