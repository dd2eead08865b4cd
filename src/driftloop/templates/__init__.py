"""Templates that ship with driftloop."""
