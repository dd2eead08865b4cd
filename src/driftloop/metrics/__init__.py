"""driftloop.metrics."""
