"""driftloop.pipeline."""
