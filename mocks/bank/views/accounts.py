"""Accounts with test balances (no authentication: test money)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from chomik.problems import ProblemSchema
from chomik.web import db_session
from mocks.bank import services
from mocks.bank.models import Account
from mocks.bank.schemas import AccountCreateSchema, AccountSchema

blp = Blueprint(
    "accounts", __name__, url_prefix="/accounts", description="Test accounts"
)


@blp.route("")
class Accounts(MethodView):
    @blp.arguments(AccountCreateSchema)
    @blp.response(201, AccountSchema)
    @blp.alt_response(422, schema=ProblemSchema, description="Bad owner or balance")
    def post(self, body: dict[str, Any]) -> Account:
        """Open an account with a test balance"""
        return services.create_account(
            db_session(), owner=body["owner"], balance=body["balance"]
        )


@blp.route("/<uuid:account_id>")
class AccountById(MethodView):
    @blp.response(200, AccountSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such account")
    def get(self, account_id: uuid.UUID) -> Account:
        """Show an account and its balance"""
        return services.access_account(db_session(), account_id)
