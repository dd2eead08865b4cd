"""Data that ships with driftloop: the bundled review dataset (see SOURCES.md)."""
