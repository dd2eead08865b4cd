"""driftloop.testing."""
