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

from collections.abc import Iterable, Sequence
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

Aggregate = Literal["livesum", "livemax", "livemin", "liveall", "sum", "max", "min"]

# Latency buckets from 5 ms to 30 s: a request, a job run or an event's trip.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def counter(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    known: Iterable[str | Sequence[str]] = (),
) -> Counter:
    """Declare a counter (exported as `<name>_total`).

    Each of `known` (label values: a string for one label, else a sequence) starts
    at 0, so a rate or an alert sees its first count rather than a new series.
    """
    metric = Counter(name, documentation, list(labels))
    _start(metric, known)
    return metric


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    buckets: Sequence[float] = LATENCY_BUCKETS,
    known: Iterable[str | Sequence[str]] = (),
) -> Histogram:
    """Declare a histogram; durations are in seconds and named `..._seconds`.

    `known` label values start empty (see `counter`).
    """
    metric = Histogram(name, documentation, list(labels), buckets=tuple(buckets))
    _start(metric, known)
    return metric


def gauge(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    aggregate: Aggregate = "livesum",
) -> Gauge:
    """Declare a gauge; `aggregate` says how web worker processes add up."""
    return Gauge(name, documentation, list(labels), multiprocess_mode=aggregate)


def _start(metric: Counter | Histogram, known: Iterable[str | Sequence[str]]) -> None:
    for values in known:
        metric.labels(*((values,) if isinstance(values, str) else values))


# --- The outbox relay (chomik.messaging.outbox) ------------------------------------

OUTBOX_PENDING = gauge(
    "outbox_pending", "Outbox rows not yet published", aggregate="livemax"
)
OUTBOX_OLDEST_AGE = gauge(
    "outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0: none)",
    aggregate="livemax",
)
OUTBOX_PUBLISHED = counter("outbox_published", "Outbox rows published to Kafka")
OUTBOX_PUBLISH_ERRORS = counter(
    "outbox_publish_errors", "Relay batches that failed (broker down, send errors)"
)
OUTBOX_REFUSED = counter(
    "outbox_refused", "Sends of outbox rows the broker refused for good"
)
OUTBOX_PARKED_EVENTS = counter(
    "outbox_parked_events", "Outbox rows parked after repeated refusals"
)
OUTBOX_PARKED = gauge(
    "outbox_parked", "Parked outbox rows (refused, kept)", aggregate="livemax"
)

# --- The consumer loop (chomik.messaging.consuming) ----------------------------------

CONSUMED = counter("consumer_messages_consumed", "Messages applied", ["group", "topic"])
DUPLICATES = counter(
    "consumer_duplicates_skipped",
    "Messages skipped as already applied",
    ["group", "topic"],
)
RETRIES = counter("consumer_retries", "Handler attempts retried", ["group", "topic"])
DEAD_LETTERED = counter(
    "consumer_dead_lettered",
    "Messages sent to the dead-letter topic",
    ["group", "topic"],
)
IGNORED = counter(
    "consumer_messages_ignored", "Messages of types with no handler", ["group", "topic"]
)
LAG = gauge(
    "consumer_lag",
    "Messages behind the log end",
    ["group", "topic", "partition"],
    aggregate="livemax",
)
OUTAGE_WAITS = counter(
    "consumer_outage_waits",
    "Pauses while a database or remote service the handlers need is unavailable",
    ["group"],
)

# --- Jobs (chomik.jobs) ----------------------------------------------------------------

JOB_RUNS = counter("scheduler_job_runs", "Job runs", ["job", "outcome"])
JOB_ROWS = counter(
    "scheduler_job_rows",
    "Rows claimed jobs handled, and exclusive runs, by outcome",
    ["job", "outcome"],
)
JOB_DURATION = histogram(
    "scheduler_job_duration_seconds", "How long one run of a job took", ["job"]
)

# --- Unsafe requests (chomik.idempotency) ------------------------------------------

IDEMPOTENT_REPLAYS = counter(
    "idempotent_replays",
    "Requests answered from a stored answer, by operation and outcome",
    ["operation", "outcome"],
)

# --- Outgoing signed callbacks of the stand-ins (chomik.webhooks) --------------------

CALLBACK_ATTEMPTS = counter(
    "outgoing_callback_attempts",
    "Outgoing callbacks handled, by outcome (sent, failed, dropped, held, duplicated)",
    ["outcome"],
)
