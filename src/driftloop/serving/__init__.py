"""driftloop.serving."""
