"""driftloop.insights."""
