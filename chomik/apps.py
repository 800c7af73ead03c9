"""The explicit table of every process the system runs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AppCommand:
    """A command-line task an app offers: `chomik <name> ARGS...`."""

    name: str
    target: str  # "module:function", called with the remaining arguments
    help: str


@dataclass(frozen=True)
class AppSpec:
    """One deployable: its port, its web factory and (optionally) its worker."""

    name: str
    port: int
    web: str
    worker: str | None = None
    worker_replicas: int = 1
    commands: tuple[AppCommand, ...] = ()

    @property
    def database(self) -> str:
        return f"chomik_{self.name}"


APPS: tuple[AppSpec, ...] = (
    AppSpec(
        "gateway",
        17000,
        "apps.gateway:create_app",
        "apps.gateway.worker:build_worker",
        commands=(
            AppCommand(
                "create-admin",
                "apps.gateway.commands:create_admin",
                "create an admin account (password from the terminal or stdin)",
            ),
        ),
    ),
    AppSpec(
        "storage", 17001, "apps.storage:create_app", "apps.storage.worker:build_worker"
    ),
    AppSpec(
        "delivery",
        17002,
        "apps.delivery:create_app",
        "apps.delivery.worker:build_worker",
    ),
    AppSpec(
        "orders",
        17003,
        "apps.orders:create_app",
        "apps.orders.worker:build_worker",
        worker_replicas=2,
    ),
    AppSpec(
        "payment",
        17004,
        "apps.payment:create_app",
        "apps.payment.worker:build_worker",
        worker_replicas=2,
    ),
    AppSpec(
        "carrier",
        17005,
        "mocks.carrier:create_app",
        "mocks.carrier.worker:build_worker",
    ),
    AppSpec("bank", 17006, "mocks.bank:create_app", "mocks.bank.worker:build_worker"),
)


def app_spec(name: str) -> AppSpec:
    """Find an app by name, with a clear error for a wrong one."""
    for spec in APPS:
        if spec.name == name:
            return spec
    raise SystemExit(f"unknown app {name!r}; known: {', '.join(s.name for s in APPS)}")


def load(target: str) -> Any:
    """Import `module:attribute`."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
