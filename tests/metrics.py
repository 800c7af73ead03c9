"""Reading metric values in tests: what one code path counted."""

from __future__ import annotations

from prometheus_client import REGISTRY


def counted(name: str, **labels: str) -> float:
    """The current value of a sample of this process (0 before its first count)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
