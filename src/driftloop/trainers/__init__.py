"""driftloop.trainers."""
