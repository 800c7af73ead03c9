"""The carrier's scheduled jobs: the status timer and sending the signed callbacks."""

from __future__ import annotations

import datetime as dt

from chomik.db import transaction
from chomik.jobs import Job, JobContext
from chomik.settings import Settings
from chomik.webhooks import Faults, sender_job
from mocks.carrier import services
from mocks.carrier.settings import CarrierSettings


def _settings(settings: Settings) -> CarrierSettings:
    assert isinstance(settings, CarrierSettings)
    return settings


def _callback_config(settings: Settings) -> tuple[str, Faults]:
    carrier = _settings(settings)
    return carrier.signing_secret, carrier.faults


def advance_due_shipments(context: JobContext) -> None:
    """Move on every shipment whose timer is due (one transaction per batch)."""
    seconds = _settings(context.settings).carrier_step_seconds
    if seconds <= 0:
        return
    while not context.stopping.is_set():
        with transaction(context.sessions) as session:
            moved = services.advance_due_shipments(
                session, step=dt.timedelta(seconds=seconds)
            )
        if moved == 0:
            return


send_callbacks = sender_job(_callback_config)

JOBS = [
    Job("advance_due_shipments", advance_due_shipments, seconds=0.5),
    Job("send_callbacks", send_callbacks, seconds=0.5),
]
