"""Observability hooks: an Observer receives every measurement txcoord takes.

``Observer`` does nothing; subclass it to forward the figures anywhere.
``PrometheusObserver`` records them with prometheus_client, imported only when
it is built, so txcoord itself needs nothing beyond SQLAlchemy.
"""

from __future__ import annotations

import threading
from typing import Any

# Phases whose latency is measured.
PHASE_PREPARE = "prepare"  # PREPARE TRANSACTION on every participant
PHASE_DECIDE = "decide"  # the COMMIT row written to the log
PHASE_COMMIT = "commit"  # COMMIT PREPARED on every participant

# Why a transaction was aborted.
ABORT_BLOCK = "block"  # the caller's block raised
ABORT_PREPARE = "prepare"  # a participant refused PREPARE
ABORT_RECOVERY = "recovery"  # recovery logged ABORT first


class Observer:
    """Receives txcoord's counts and timings. Every method may be called from any thread."""

    def phase(self, phase: str, seconds: float) -> None:
        """One phase of one transaction took `seconds`."""

    def committed(self) -> None:
        """A transaction was decided COMMIT."""

    def aborted(self, reason: str) -> None:
        """A transaction was rolled back (reason: block, prepare, recovery)."""

    def recovered(self, participant: str, outcome: str) -> None:
        """Recovery finished one branch (outcome: commit or abort)."""

    def in_doubt(self, participant: str, branches: int) -> None:
        """After a recovery pass, this many old branches stay prepared."""


class _Instruments:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.commits = Counter(
            "txcoord_commits", "Coordinated transactions decided COMMIT.",
            registry=registry,
        )  # fmt: skip
        self.aborts = Counter(
            "txcoord_aborts", "Coordinated transactions rolled back.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.recovered_commits = Counter(
            "txcoord_recovered_commits", "Branches committed by recovery.",
            ["participant"], registry=registry,
        )  # fmt: skip
        self.recovered_aborts = Counter(
            "txcoord_recovered_aborts", "Branches rolled back by recovery.",
            ["participant"], registry=registry,
        )  # fmt: skip
        self.in_doubt = Gauge(
            "txcoord_in_doubt",
            "Prepared branches older than the in-doubt threshold left after recovery.",
            ["participant"], registry=registry, multiprocess_mode="max",
        )  # fmt: skip
        self.phase = Histogram(
            "txcoord_phase_seconds", "Latency of each two-phase commit phase.",
            ["phase"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )  # fmt: skip


_INSTRUMENTS: dict[int, _Instruments] = {}
_LOCK = threading.Lock()


class PrometheusObserver(Observer):
    """Records into prometheus_client metrics (``txcoord_*``) of `registry`.

    Several observers on one registry share the same metrics.
    """

    def __init__(self, registry: Any = None) -> None:
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        with _LOCK:
            key = id(registry)
            if key not in _INSTRUMENTS:
                _INSTRUMENTS[key] = _Instruments(registry)
            self._m = _INSTRUMENTS[key]

    def phase(self, phase: str, seconds: float) -> None:
        self._m.phase.labels(phase).observe(seconds)

    def committed(self) -> None:
        self._m.commits.inc()

    def aborted(self, reason: str) -> None:
        self._m.aborts.labels(reason).inc()

    def recovered(self, participant: str, outcome: str) -> None:
        target = (
            self._m.recovered_commits
            if outcome == "commit"
            else self._m.recovered_aborts
        )
        target.labels(participant).inc()

    def in_doubt(self, participant: str, branches: int) -> None:
        self._m.in_doubt.labels(participant).set(branches)
