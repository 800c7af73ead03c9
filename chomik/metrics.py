"""Metrics: the one way to declare them, and every metric the kit itself keeps.

Apps declare their business metrics with `counter`, `histogram` and `gauge` (in their
own `metrics.py`); the kit's outbox, consumer, scheduler and idempotency metrics are
declared below. Under gunicorn the launcher sets `PROMETHEUS_MULTIPROC_DIR` before the
app is imported, so prometheus_client writes every value to the shared directory and
`/metrics` adds up all web worker processes (a gauge says how: `livesum`, `max`, ...);
in a worker process the values live in the process registry served on `METRICS_PORT`.
Names follow Prometheus' conventions: counters get `_total` from the client library,
durations are `_seconds`, and every label takes a bounded set of values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

Aggregate = Literal["livesum", "livemax", "livemin", "liveall", "sum", "max", "min"]

# Latency buckets from 5 ms to 30 s: a request, a job run or an event's trip.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """Declare a counter (exported as `<name>_total`)."""
    return Counter(name, documentation, list(labels))


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> Histogram:
    """Declare a histogram; durations are in seconds and named `..._seconds`."""
    return Histogram(name, documentation, list(labels), buckets=tuple(buckets))


def gauge(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    aggregate: Aggregate = "livesum",
) -> Gauge:
    """Declare a gauge; `aggregate` says how web worker processes add up."""
    return Gauge(name, documentation, list(labels), multiprocess_mode=aggregate)
