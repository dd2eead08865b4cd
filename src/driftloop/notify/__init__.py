"""driftloop.notify."""
