"""The test-only admin endpoint of an outside-system stand-in's fault switches.

`faults_blueprint(defaults)` serves `GET/PUT/DELETE /admin/faults` over the
`fault_switches` table (`chomik.webhooks`). A stand-in registers it only outside
production, so there the path does not exist (404).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import validate

from chomik.web import db_session
from chomik.webhooks import Faults, clear_faults, current_faults, set_faults


class FaultsSchema(ma.Schema):
    """The fault switches in force (probabilities 0..1, seconds, a unix time)."""

    drop = ma.fields.Float(validate=validate.Range(min=0, max=1))
    duplicate = ma.fields.Float(validate=validate.Range(min=0, max=1))
    reorder = ma.fields.Float(validate=validate.Range(min=0, max=1))
    delay = ma.fields.Float(validate=validate.Range(min=0, max=3600))
    unavailable_until = ma.fields.Float(validate=validate.Range(min=0))


class FaultsUpdateSchema(FaultsSchema):
    """The body of PUT /admin/faults: only the switches to change."""

    unavailable_for = ma.fields.Float(
        validate=validate.Range(min=0, max=86400),
        metadata={"description": "answer 503 for this many seconds from now"},
    )


def faults_blueprint(defaults: Callable[[], Faults]) -> Blueprint:
    """The admin blueprint; `defaults` gives the configured faults (settings)."""
    blp = Blueprint(
        "admin", __name__, url_prefix="/admin", description="Fault switches (tests)"
    )

    @blp.route("/faults")
    class FaultSwitches(MethodView):
        @blp.response(200, FaultsSchema)
        def get(self) -> dict[str, Any]:
            """Show the fault switches in force"""
            return asdict(current_faults(db_session(), defaults()))

        @blp.arguments(FaultsUpdateSchema)
        @blp.response(200, FaultsSchema)
        def put(self, body: dict[str, Any]) -> dict[str, Any]:
            """Change some fault switches until changed again"""
            seconds = body.pop("unavailable_for", None)
            if seconds is not None:
                body["unavailable_until"] = time.time() + seconds
            set_faults(db_session(), body)
            return asdict(current_faults(db_session(), defaults()))

        @blp.response(200, FaultsSchema)
        def delete(self) -> dict[str, Any]:
            """Forget the run-time changes: the settings apply again"""
            clear_faults(db_session())
            return asdict(current_faults(db_session(), defaults()))

    return blp
