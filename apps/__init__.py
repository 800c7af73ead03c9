"""The deployable services."""
