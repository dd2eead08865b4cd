"""driftloop.storage."""
