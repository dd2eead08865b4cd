"""driftloop.dashboard."""
