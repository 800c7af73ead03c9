"""Command-line tasks of the gateway (`chomik create-admin EMAIL`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from apps.gateway import services
from apps.gateway.models import Role
from apps.gateway.passwords import Passwords
from apps.gateway.schemas import AccountCreateSchema
from apps.gateway.settings import GatewaySettings
from chomik.db import make_engine, make_session_factory, transaction
from chomik.problems import Problem


def create_admin(argv: Sequence[str]) -> int:
    """Create an admin account; the password is asked for, or read from stdin."""
    parser = argparse.ArgumentParser(
        prog="chomik create-admin", description=create_admin.__doc__
    )
    parser.add_argument("email")
    parser.add_argument("--name", default="", help="display name (default: e-mail)")
    args = parser.parse_args(argv)
    password = _read_password()
    errors = AccountCreateSchema().validate(
        {
            "email": args.email,
            "password": password,
            "name": args.name or args.email.split("@")[0],
            "role": "buyer",
        }
    )  # fmt: skip  (the role is fixed below; the API itself never makes admins)
    if errors:
        details = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in errors.items())
        print(f"chomik create-admin: {details}", file=sys.stderr)
        return 1
    settings = GatewaySettings.from_env()
    engine = make_engine(settings.database_url, pool_size=1)
    passwords = Passwords(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
    )
    try:
        with transaction(make_session_factory(engine)) as session:
            account = services.register_account(
                session,
                email=args.email,
                password=password,
                name=args.name or args.email.split("@")[0],
                role=Role.ADMIN,
                passwords=passwords,
            )
    except Problem as problem:
        errors = problem.extra.get("errors") or {}
        details = "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        print(f"chomik create-admin: {details or problem.detail}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"admin {account.email} created (id {account.id})")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat it: "):
            raise SystemExit("chomik create-admin: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")
