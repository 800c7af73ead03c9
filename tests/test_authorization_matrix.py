"""The authorization matrix: every endpoint of every app × every kind of caller.

One explicit table states, for each (app, method, route) the apps serve, the status
each caller gets with a valid request: anonymous, buyer A, buyer B, seller S, seller
T, an admin, and another service (a service token). The objects a route needs belong
to buyer A (an address, an order, its payment, its shipment) and seller S (a product
in A's order), so B and T show what another user's object answers: 404, never 403. A
route the apps serve that the table does not list fails the walk test; each cell is a
test of its own. The services' rows are sent through the gateway too: a public route
answers there as it does at the service, an internal one is a 404 whoever asks.

Out of the table: health, metrics, the OpenAPI documents and the docs (public by
design, tested where they are built) and the mocks (they play outside systems).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from apps.delivery import create_app as create_delivery_app
from apps.delivery.settings import DeliverySettings
from apps.gateway import create_app as create_gateway_app
from apps.gateway import services as gateway_services
from apps.gateway.models import Role, User
from apps.gateway.settings import GatewaySettings
from apps.orders import create_app as create_orders_app
from apps.orders.services import Ports
from apps.orders.settings import OrdersSettings
from apps.payment import create_app as create_payment_app
from apps.payment.models import Payment, PaymentStatus
from apps.payment.services import build_ports
from apps.payment.settings import PaymentSettings
from apps.storage import create_app as create_storage_app
from apps.storage.services import StockLine, reserve_stock
from apps.storage.settings import StorageSettings
from chomik.apps import APPS, load
from chomik.messaging.kafka import ensure_topics
from chomik.signing import sign
from clients.delivery import DeliveryClient
from clients.events import BANK_CALLBACKS, CARRIER_CALLBACKS
from clients.orders import OrderStatus
from clients.storage import StorageClient
from mocks.bank import create_app as create_bank_app
from mocks.bank.settings import BankSettings
from tests.apps.gateway.conftest import (
    FAST_HASH,
    PASSWORD,
    private_key_file,
    reset_rate_limits,
)
from tests.apps.payment.conftest import BANK, MERCHANT, TOKEN, bank_client
from tests.chomik.test_every_route_authenticates import settings_class
from tests.clients.wsgi import mounted
from tests.conftest import TEST_SERVICE_SECRET, auth
from tests.factories import delivery as delivery_factories
from tests.factories import orders as order_factories
from tests.factories import storage as storage_factories

ACTORS = ("anonymous", "buyer_a", "buyer_b", "seller_s", "seller_t", "admin", "service")
USER_ROLES = {
    "buyer_a": "buyer",
    "buyer_b": "buyer",
    "seller_s": "seller",
    "seller_t": "seller",
    "admin": "admin",
}
MOCKS = {"carrier", "bank"}
# Served by every app and public by design; tested where they are built.
OUTSIDE_THE_MATRIX = re.compile(
    r"^/(health/.*|metrics|openapi\.json|static/.*|docs|docs/.*)$"
)
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
BANK_SECRET = "bank-matrix-secret-0123456789"
CARRIER_SECRET = "carrier-matrix-secret-0123456789"
STORAGE, DELIVERY = "http://storage.test", "http://delivery.test"


@dataclass
class World:
    """The callers and the objects they own, made fresh for each cell."""

    ids: dict[str, uuid.UUID]
    tokens: dict[str, str]
    product: uuid.UUID = field(default_factory=uuid.uuid4)  # seller S's
    address: uuid.UUID = field(default_factory=uuid.uuid4)  # buyer A's
    order: uuid.UUID = field(default_factory=uuid.uuid4)  # A's, holding S's product
    payment: uuid.UUID = field(default_factory=uuid.uuid4)  # of A's order
    shipment: uuid.UUID = field(default_factory=uuid.uuid4)  # of A's order, paid
    login_email: str = ""
    refresh_token: str = ""

    def headers(self, actor: str) -> dict[str, str]:
        token = self.tokens.get(actor)
        return {} if token is None else auth(token)


Body = Callable[[World], Any]


@dataclass(frozen=True)
class Row:
    """One route and method of one app, and the status each actor gets."""

    app: str
    method: str
    rule: str
    expected: tuple[int, int, int, int, int, int, int]  # in the order of ACTORS
    body: Body | None = None
    target: Callable[[World], str] | None = None  # the path, when not the rule's
    headers: Callable[[World], dict[str, str]] = lambda _: {}
    # The route writes through connections of its own (a two-phase commit), which
    # the test's transaction cannot hold: its objects are committed, and every
    # database is emptied after the cell.
    commits: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.app, self.rule, self.method)


def signed(id_field: str, secret: str) -> Callable[[World], dict[str, str]]:
    """A callback's signature header (the body is fixed per row, see `callback`)."""
    return lambda _: {"X-Signature": sign(callback_body(id_field), secret)}


def callback_body(id_field: str) -> bytes:
    document = {
        "event_id": "7d1f7c1e-0000-4000-8000-000000000001",
        id_field: f"matrix-{id_field}",
        "status": "SUCCEEDED",
        "occurred_at": "2026-11-29T12:00:00+00:00",
    }
    return json.dumps(document).encode()


def product_fields(_: World) -> dict[str, Any]:
    return {
        "title": "Air Max 90",
        "brand": "Nike",
        "model": "Air Max 90",
        "size": "42",
        "color": "white",
        "condition": "new",
        "price": "129.90",
        "quantity": 3,
    }


def address_fields(_: World) -> dict[str, Any]:
    return {
        "recipient": "Anna Buyer",
        "phone": "+79161234567",
        "country": "RU",
        "city": "Moscow",
        "street": "Tverskaya 1",
        "postal_code": "125009",
    }


def order_request(w: World) -> dict[str, Any]:
    """S's product to A's address: B sending it names an address not B's."""
    return {
        "items": [{"product_id": str(w.product), "quantity": 1}],
        "address_id": str(w.address),
    }


def new_key(_: World) -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


PROXY = "/api/v1/<public_path:path>"

# fmt: off
# Status per actor:             anon  A    B    S    T    admin service
TABLE: tuple[Row, ...] = (
    # The gateway's own routes. Registering, logging in, refreshing and the JWKS are
    # open to anyone (a token, even a service's, is not looked at); logout and me
    # take a user's access token, which a service token is not.
    Row("gateway", "POST", "/api/v1/auth/register",
        (201, 201, 201, 201, 201, 201, 201),
        body=lambda _: {"email": f"new-{uuid.uuid4().hex[:12]}@example.com",
                        "password": PASSWORD, "name": "New", "role": "buyer"}),
    Row("gateway", "POST", "/api/v1/auth/login",
        (200, 200, 200, 200, 200, 200, 200),
        body=lambda w: {"email": w.login_email, "password": PASSWORD}),
    Row("gateway", "POST", "/api/v1/auth/refresh",
        (200, 200, 200, 200, 200, 200, 200),
        body=lambda w: {"refresh_token": w.refresh_token}),
    Row("gateway", "POST", "/api/v1/auth/logout",
        (401, 204, 204, 204, 204, 204, 401)),
    Row("gateway", "GET", "/api/v1/auth/me",
        (401, 200, 200, 200, 200, 200, 401)),
    Row("gateway", "GET", "/api/v1/auth/jwks",
        (200, 200, 200, 200, 200, 200, 200)),
    # Callbacks carry an HMAC signature instead of a token: signed, anyone's is queued.
    Row("gateway", "POST", "/api/v1/callbacks/bank",
        (202, 202, 202, 202, 202, 202, 202),
        body=lambda _: callback_body("transaction_id"),
        headers=signed("transaction_id", BANK_SECRET)),
    Row("gateway", "POST", "/api/v1/callbacks/carrier",
        (202, 202, 202, 202, 202, 202, 202),
        body=lambda _: callback_body("shipment_id"),
        headers=signed("shipment_id", CARRIER_SECRET)),
    # The proxy forwards public paths to the service that owns them (the service
    # rows below are what it relays); an internal path is never forwarded, whoever
    # asks, with whatever method.
    Row("gateway", "GET", PROXY, (404, 404, 404, 404, 404, 404, 404),
        target=lambda w: f"/api/v1/internal/orders/{w.order}"),
    Row("gateway", "POST", PROXY, (404, 404, 404, 404, 404, 404, 404),
        body=lambda w: {"order_id": str(w.order),
                        "items": [{"product_id": str(w.product), "quantity": 1}]},
        target=lambda _: "/api/v1/internal/reservations"),
    Row("gateway", "PUT", PROXY, (404, 404, 404, 404, 404, 404, 404),
        body=lambda _: {}, target=lambda w: f"/api/v1/internal/addresses/{w.address}"),
    Row("gateway", "PATCH", PROXY, (404, 404, 404, 404, 404, 404, 404),
        body=lambda _: {}, target=lambda w: f"/api/v1/internal/orders/{w.order}"),
    Row("gateway", "DELETE", PROXY, (404, 404, 404, 404, 404, 404, 404),
        target=lambda w: f"/api/v1/internal/reservations/{w.order}"),

    # Storage: the catalog is open to read (a presented token must be a valid access
    # token, which a service token is not); sellers and admins write, a seller only
    # their own products (another seller's is a 404).
    Row("storage", "GET", "/api/v1/products",
        (200, 200, 200, 200, 200, 200, 401)),
    Row("storage", "POST", "/api/v1/products",
        (401, 403, 403, 201, 201, 201, 401), body=product_fields),
    Row("storage", "GET", "/api/v1/products/<uuid:product_id>",
        (200, 200, 200, 200, 200, 200, 401)),
    Row("storage", "PATCH", "/api/v1/products/<uuid:product_id>",
        (401, 403, 403, 200, 404, 200, 401), body=lambda _: {"price": "119.90"}),
    Row("storage", "DELETE", "/api/v1/products/<uuid:product_id>",
        (401, 403, 403, 204, 404, 204, 401)),
    # Internal reservations: a service token only; a user's token is refused.
    Row("storage", "POST", "/api/v1/internal/reservations",
        (401, 401, 401, 401, 401, 401, 201),
        body=lambda w: {"order_id": str(uuid.uuid4()),
                        "items": [{"product_id": str(w.product), "quantity": 1}]}),
    Row("storage", "GET", "/api/v1/internal/reservations/<uuid:order_id>",
        (401, 401, 401, 401, 401, 401, 200)),
    Row("storage", "POST", "/api/v1/internal/reservations/<uuid:order_id>/release",
        (401, 401, 401, 401, 401, 401, 200)),
    Row("storage", "POST", "/api/v1/internal/reservations/<uuid:order_id>/commit",
        (401, 401, 401, 401, 401, 401, 200)),

    # Delivery: addresses are for buyers only (another role is a 403), each buyer
    # their own (another buyer's is a 404).
    Row("delivery", "GET", "/api/v1/addresses",
        (401, 200, 200, 403, 403, 403, 401)),
    Row("delivery", "POST", "/api/v1/addresses",
        (401, 201, 201, 403, 403, 403, 401), body=address_fields),
    Row("delivery", "DELETE", "/api/v1/addresses/<uuid:address_id>",
        (401, 204, 404, 403, 403, 403, 401)),
    Row("delivery", "GET", "/api/v1/internal/addresses/<uuid:address_id>",
        (401, 401, 401, 401, 401, 401, 200),
        target=lambda w: f"/api/v1/internal/addresses/{w.address}"
                         f"?buyer_id={w.ids['buyer_a']}"),
    # Shipments: any user lists their own (an admin every one); a shipment is its
    # buyer's and an admin's, anyone else's a 404 (a seller's of their product too).
    Row("delivery", "GET", "/api/v1/shipments",
        (401, 200, 200, 200, 200, 200, 401)),
    Row("delivery", "GET", "/api/v1/shipments/<uuid:shipment_id>",
        (401, 200, 404, 404, 404, 200, 401)),

    # Orders: buyers place; everyone lists what is theirs; an order is its buyer's
    # and an admin's, and a seller sees their part of it; only its buyer or an admin
    # cancels. B placing with A's address is told the address is unknown (422).
    Row("orders", "GET", "/api/v1/orders",
        (401, 200, 200, 200, 200, 200, 401)),
    Row("orders", "POST", "/api/v1/orders",
        (401, 201, 422, 403, 403, 403, 401), body=order_request, headers=new_key),
    Row("orders", "GET", "/api/v1/orders/<uuid:order_id>",
        (401, 200, 404, 200, 404, 200, 401)),
    Row("orders", "POST", "/api/v1/orders/<uuid:order_id>/cancel",
        (401, 200, 404, 404, 404, 200, 401)),
    Row("orders", "GET", "/api/v1/internal/orders/<uuid:order_id>",
        (401, 401, 401, 401, 401, 401, 200)),

    # Payment: any user lists their own payments (an admin every one); a payment is
    # its buyer's and an admin's, anyone else's a 404. Only the order's buyer pays
    # it: a seller's role may not (403), and an admin, whose role passes, is told
    # another's order is not found like anyone else (404).
    Row("payment", "GET", "/api/v1/payments",
        (401, 200, 200, 200, 200, 200, 401)),
    Row("payment", "GET", "/api/v1/payments/<uuid:payment_id>",
        (401, 200, 404, 404, 404, 200, 401)),
    Row("payment", "POST", "/api/v1/orders/<uuid:order_id>/payment",
        (401, 201, 404, 403, 403, 404, 401), commits=True),
)
# fmt: on


def cells() -> Iterator[Any]:
    for row in TABLE:
        for actor, status in zip(ACTORS, row.expected, strict=True):
            yield pytest.param(
                row, actor, status, id=f"{row.app} {row.method} {row.rule} {actor}"
            )


def path_of(row: Row, world: World) -> str:
    """The row's path with each id variable filled with the world's object."""
    if row.target is not None:
        return row.target(world)
    objects = {
        "product_id": world.product,
        "address_id": world.address,
        "order_id": world.order,
        "payment_id": world.payment,
        "shipment_id": world.shipment,
    }
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(objects[m.group(1)]), row.rule)


# --- building the apps and the objects each needs ---------------------------


@pytest.fixture(scope="module", autouse=True)
def callback_topics(infra):
    ensure_topics(infra.kafka, [BANK_CALLBACKS, CARRIER_CALLBACKS])


class Apps:
    """The apps of one cell, built on demand inside the test's transaction."""

    def __init__(self, settings_for, jwt_keys, dbs, infra) -> None:
        self.settings_for, self.jwt_keys, self.dbs, self.infra = (
            settings_for, jwt_keys, dbs, infra,
        )  # fmt: skip
        self.built: dict[str, Flask] = {}
        self.closers: list[Callable[[], None]] = []

    def get(self, name: str) -> Flask:
        if name not in self.built:
            app = getattr(self, f"_{name}")()
            app.testing = True
            self.built[name] = self.dbs.bind_app(app, name)
        return self.built[name]

    def _gateway(self) -> Flask:
        settings = self.settings_for(
            GatewaySettings,
            jwt_private_key_file=private_key_file(self.jwt_keys),
            bank_callback_secrets=BANK_SECRET,
            carrier_callback_secrets=CARRIER_SECRET,
            openapi_cache_ttl=0.0,
            **FAST_HASH,
        )
        app = create_gateway_app(settings)
        state = app.extensions["chomik.gateway"]
        self.closers += [
            state.forwarder.close,
            state.publisher.close,
            lambda: reset_rate_limits(self.infra),
        ]
        return app

    def _storage(self) -> Flask:
        return create_storage_app(self.settings_for(StorageSettings))

    def _delivery(self) -> Flask:
        return create_delivery_app(self.settings_for(DeliverySettings))

    def _orders(self) -> Flask:
        storage = StorageClient(
            STORAGE, service_secret=TEST_SERVICE_SECRET, caller="orders",
            transport=mounted(self.get("storage"), STORAGE),
        )  # fmt: skip
        addresses = DeliveryClient(
            DELIVERY, service_secret=TEST_SERVICE_SECRET, caller="orders",
            transport=mounted(self.get("delivery"), DELIVERY),
        )  # fmt: skip
        self.closers += [storage.close, addresses.close]
        settings = self.settings_for(
            OrdersSettings, storage_url=STORAGE, delivery_url=DELIVERY
        )
        return create_orders_app(
            settings, ports=Ports(storage=storage, addresses=addresses)
        )

    def _bank(self) -> Flask:
        return create_bank_app(
            self.settings_for(
                BankSettings,
                bank_merchant_tokens=f"{TOKEN}:{MERCHANT}",
                bank_callback_secrets=BANK_SECRET,
                bank_public_url=BANK,
            )
        )

    def _payment(self) -> Flask:
        """Payment, with the bank mock served in-process behind its client."""
        bank = bank_client(self.get("bank"))
        settings = self.settings_for(
            PaymentSettings,
            orders_database_url=self.infra.urls["orders"],
            txcoord_database_url=self.infra.urls["txcoord"],
            bank_url=BANK,
            bank_merchant_token=TOKEN,
            bank_merchant_account_id=str(MERCHANT),
            bank_callback_url="http://gateway.test/api/v1/callbacks/bank",
            bank_callback_secrets=BANK_SECRET,
        )
        ports = build_ports(settings, bank=bank)
        engines = [
            *ports.coordinator.participants.values(),
            ports.coordinator.log.engine,
        ]
        self.closers += [bank.close, *(engine.dispose for engine in engines)]
        return create_payment_app(settings, ports=ports)

    def through_gateway(self, name: str) -> Flask:
        """The gateway, forwarding to the service `name` served from this process.

        A real HTTP server on the loopback: the proxy streams both ways, which an
        in-memory adapter does not do.
        """
        server = make_server("127.0.0.1", 0, self.get(name))
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        thread.start()
        self.closers.append(lambda: (server.shutdown(), thread.join()))
        gateway = self.get("gateway")
        forwarder = gateway.extensions["chomik.gateway"].forwarder
        forwarder.upstreams[name] = f"http://127.0.0.1:{server.server_port}"
        return gateway

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        for app in self.built.values():
            app.extensions["chomik"].engine.dispose()


def seed_gateway(apps: Apps, world: World) -> None:
    """An account behind each user token, and one to log in and refresh with."""
    state = apps.get("gateway").extensions["chomik.gateway"]
    session = apps.dbs.session("gateway")
    for actor, role in USER_ROLES.items():
        session.add(
            User(id=world.ids[actor], email=f"{actor}-{world.ids[actor]}@example.com",
                 name=actor, role=role, password_hash="unused")
        )  # fmt: skip
    world.login_email = f"login-{uuid.uuid4().hex[:12]}@example.com"
    gateway_services.register_account(
        session, email=world.login_email, password=PASSWORD, name="Login",
        role=Role.BUYER, passwords=state.passwords,
    )  # fmt: skip
    with apps.get("gateway").app_context():  # tokens are signed by the app's kit
        pair = gateway_services.log_in(
            session, email=world.login_email, password=PASSWORD,
            passwords=state.passwords, issuer=state.issuer,
        )  # fmt: skip
    world.refresh_token = pair.refresh_token
    session.commit()


def seed_storage(apps: Apps, world: World) -> None:
    """S's product, with stock reserved for A's order."""
    apps.get("storage")
    session = apps.dbs.session("storage")
    storage_factories.bind(session)
    storage_factories.ProductFactory(id=world.product, seller_id=world.ids["seller_s"])
    reserve_stock(session, order_id=world.order, lines=[StockLine(world.product, 1)])
    session.commit()


def seed_delivery(apps: Apps, world: World) -> None:
    """A's address, and the shipment of A's order (paid, so the carrier has it)."""
    apps.get("delivery")
    session = apps.dbs.session("delivery")
    delivery_factories.bind(session)
    delivery_factories.AddressFactory(id=world.address, buyer_id=world.ids["buyer_a"])
    delivery_factories.ShipmentFactory(
        id=world.shipment, order_id=world.order, buyer_id=world.ids["buyer_a"],
        address_id=world.address,
    )  # fmt: skip
    delivery_factories.ShipmentEventFactory(shipment_id=world.shipment)
    session.commit()


def seed_orders(apps: Apps, world: World) -> None:
    """A's order of S's product to A's address (placing needs both services)."""
    seed_storage(apps, world)
    seed_delivery(apps, world)
    apps.get("orders")
    session = apps.dbs.session("orders")
    order_factories.bind(session)
    order_factories.OrderFactory(
        id=world.order,
        buyer_id=world.ids["buyer_a"],
        address_id=world.address,
        lines=[{"product_id": world.product, "seller_id": world.ids["seller_s"]}],
    )
    session.commit()


def seed_payment(apps: Apps, world: World) -> None:
    """The payment of A's order, waiting for the bank's result."""
    apps.get("payment")
    session = apps.dbs.session("payment")
    transaction = uuid.uuid4()
    session.add(
        Payment(
            id=world.payment, order_id=world.order, buyer_id=world.ids["buyer_a"],
            status=PaymentStatus.PENDING, amount=Decimal("129.90"), currency="RUB",
            bank_transaction_id=transaction,
            pay_url=f"{BANK}/api/v1/transactions/{transaction}/pay",
        )
    )  # fmt: skip
    session.commit()


def seed_payable_order(apps: Apps, world: World) -> None:
    """A's order of S's product, committed: a start reads it and moves it through
    its own connections, in a two-phase commit."""
    with Session(apps.infra.engine("orders")) as session:
        order_factories.bind(session)
        order_factories.OrderFactory(
            id=world.order,
            buyer_id=world.ids["buyer_a"],
            status=OrderStatus.AWAITING_PAYMENT,
            address_id=world.address,
            lines=[{"product_id": world.product, "seller_id": world.ids["seller_s"]}],
        )
        session.commit()


SEEDS: dict[str, Callable[[Apps, World], None]] = {
    "gateway": seed_gateway,
    "storage": seed_storage,
    "delivery": seed_delivery,
    "orders": seed_orders,
    "payment": seed_payment,
}
# For the rows that commit (`Row.commits`).
COMMITTED_SEEDS: dict[str, Callable[[Apps, World], None]] = {
    "payment": seed_payable_order,
}


def seed(apps: Apps, world: World, row: Row) -> None:
    """The objects the row's route needs."""
    (COMMITTED_SEEDS if row.commits else SEEDS)[row.app](apps, world)


@pytest.fixture(autouse=True)
def emptied_after_commits(request: pytest.FixtureRequest) -> None:
    """Every database emptied after a cell whose row commits (`committed_db`).

    Autouse, so set up before `dbs` and torn down after it: the emptying does not
    wait on the locks of the cell's still open transactions.
    """
    callspec = getattr(request.node, "callspec", None)
    row = None if callspec is None else callspec.params.get("row")
    if isinstance(row, Row) and row.commits:
        request.getfixturevalue("committed_db")


@pytest.fixture
def apps(settings_for, jwt_keys, dbs, infra) -> Iterator[Apps]:
    built = Apps(settings_for, jwt_keys, dbs, infra)
    yield built
    built.close()


@pytest.fixture
def world(make_token, service_token) -> World:
    ids = {actor: uuid.uuid4() for actor in USER_ROLES}
    tokens = {actor: make_token(str(ids[actor]), USER_ROLES[actor]) for actor in ids}
    return World(ids=ids, tokens={**tokens, "service": service_token})


# --- the tests ---------------------------------------------------------------


def send(app: Flask, row: Row, world: World, actor: str) -> Any:
    """The row's request, as `actor`, to `app`."""
    body = None if row.body is None else row.body(world)
    data = body if isinstance(body, bytes) else json.dumps(body)
    return app.test_client().open(
        path_of(row, world),
        method=row.method,
        data=None if body is None else data,
        content_type="application/json",
        headers={**world.headers(actor), **row.headers(world)},
    )


@pytest.mark.parametrize(("row", "actor", "expected"), list(cells()))
def test_each_caller_gets_the_status_the_table_states(
    apps, world, row, actor, expected
):
    seed(apps, world, row)

    response = send(apps.get(row.app), row, world, actor)

    assert response.status_code == expected, response.get_data(as_text=True)[:500]


def gateway_cells() -> Iterator[Any]:
    """The services' rows as sent to the gateway: a public route answers as the
    service does (the gateway's own token check agrees with it), an internal one is
    a 404 for everyone."""
    for row in TABLE:
        if row.app == "gateway":
            continue
        internal = "/internal/" in row.rule
        for actor, status in zip(ACTORS, row.expected, strict=True):
            yield pytest.param(
                row, actor, 404 if internal else status,
                id=f"{row.app} {row.method} {row.rule} {actor}",
            )  # fmt: skip


@pytest.mark.parametrize(("row", "actor", "expected"), list(gateway_cells()))
def test_through_the_gateway_each_caller_gets_the_same_status(
    apps, world, row, actor, expected
):
    seed(apps, world, row)

    response = send(apps.through_gateway(row.app), row, world, actor)

    assert response.status_code == expected, response.get_data(as_text=True)[:500]


def served_routes(settings_for, jwt_keys) -> set[tuple[str, str, str]]:
    """Every (app, rule, method) of every app but the mocks, less OUTSIDE_THE_MATRIX."""
    routes = set()
    for spec in APPS:
        if spec.name in MOCKS:
            continue
        extra: dict[str, Any] = {}
        if spec.name == "gateway":
            extra = {"jwt_private_key_file": private_key_file(jwt_keys), **FAST_HASH}
        app = load(spec.web)(settings_for(settings_class(spec), **extra))
        for rule in app.url_map.iter_rules():
            if OUTSIDE_THE_MATRIX.match(rule.rule):
                continue
            for method in (rule.methods or set()) - SKIPPED_METHODS:
                routes.add((spec.name, rule.rule, method))
        gateway = app.extensions.get("chomik.gateway")
        if gateway is not None:
            gateway.forwarder.close()
            gateway.publisher.close()
        app.extensions["chomik"].engine.dispose()
    return routes


def test_the_table_lists_every_route_the_apps_serve_and_no_other(
    settings_for, jwt_keys
):
    listed = [row.key for row in TABLE]
    assert len(listed) == len(set(listed)), "a route is listed twice"
    served = served_routes(settings_for, jwt_keys)
    assert ("storage", "/api/v1/products", "POST") in served  # the walk sees views
    assert {"missing from the table": served - set(listed)} == {
        "missing from the table": set()
    }
    assert {"not served": set(listed) - served} == {"not served": set()}


def test_another_users_object_is_never_a_403():
    """A 403 says the role may not act; for an allowed role, others' objects are 404."""
    owners_cells = {"buyer_b": "buyer_a", "seller_t": "seller_s"}
    wrong = []
    for row in TABLE:
        statuses = dict(zip(ACTORS, row.expected, strict=True))
        for other, owner in owners_cells.items():
            if statuses[other] == 403 and statuses[owner] < 400:
                wrong.append((row.app, row.method, row.rule, other))
    assert wrong == []


def test_internal_routes_refuse_every_user_token():
    for row in TABLE:
        if "/internal/" in row.rule:
            statuses = dict(zip(ACTORS, row.expected, strict=True))
            assert {a: statuses[a] for a in ACTORS if a != "service"} == {
                a: 401 for a in ACTORS if a != "service"
            }, row.key
