"""The bank mock's HTTP edges: one blueprint per module."""
