"""The whole purchase through the running system (`chomik run`), public HTTP only: the
gateway, the services and their workers, the bank and carrier mocks and their signed
callbacks, the broker; the order goes PAID → SHIPPED → DELIVERED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests

from chomik.apps import APPS
from chomik.infra import port_is_free
from tests.system import HOST, base_url
from tests.system.test_run import data_dir, launch, ports, wait_up  # noqa: F401

pytestmark = pytest.mark.system

GATEWAY = f"{base_url(17000)}/api/v1"
BANK = f"{base_url(17006)}/api/v1"
PASSWORD = "correct horse battery"


def call(method, path, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(
        method, f"{GATEWAY}{path}", headers=headers, timeout=10, **kwargs
    )


def register(role):
    """A new account of `role`: its e-mail and its login answer (both tokens)."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "name": role, "role": role}
    assert call("POST", "/auth/register", json=body).status_code == 201
    login = call("POST", "/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return email, login.json()


def user(role):
    """The access token of a new account of `role`."""
    return register(role)[1]["access_token"]


def placed_order(seller, buyer):
    product = call("POST", "/products", seller, json={
        "title": "Air Max 90", "brand": "Nike", "model": "Air Max 90", "size": "42",
        "color": "white", "condition": "new", "price": "129.90", "currency": "RUB",
        "quantity": 3,
    })  # fmt: skip
    assert product.status_code == 201, product.text
    address = call("POST", "/addresses", buyer, json={
        "recipient": "Anna Petrova", "phone": "+79161234567", "country": "RU",
        "city": "Moscow", "street": "Tverskaya 7", "postal_code": "125009",
    })  # fmt: skip
    assert address.status_code == 201, address.text
    order = call(
        "POST", "/orders", buyer,
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"items": [{"product_id": product.json()["id"], "quantity": 2}],
              "address_id": address.json()["id"]},
    )  # fmt: skip
    assert order.status_code == 201, order.text
    return order.json()


def wait_for_status(order, buyer, wanted, timeout):
    """Poll the order through the gateway until it reaches `wanted`; its history."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = call("GET", f"/orders/{order['id']}", buyer).json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == wanted:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"order {order['id']} went {seen}, never {wanted}")


def checked_clean(env_extra, timeout=60):
    """`chomik check --grace 0`, run until it passes (the last events settle): its output."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            [sys.executable, "-m", "chomik.cli", "check", "--grace", "0"],
            env={**env, **env_extra}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout
        time.sleep(1)


def test_a_buyer_pays_through_the_gateway_and_the_order_is_paid_once_and_delivered(
    ports,  # noqa: F811 - the launcher's fixtures
    data_dir,  # noqa: F811
):
    for spec in APPS:
        assert port_is_free(spec.port, HOST), f"port {spec.port} busy before the test"
    launcher = launch(ports, data_dir)
    try:
        wait_up(launcher)
        seller, buyer = user("seller"), user("buyer")
        order = placed_order(seller, buyer)

        started = call("POST", f"/orders/{order['id']}/payment", buyer)
        assert started.status_code == 201, started.text
        again = call("POST", f"/orders/{order['id']}/payment", buyer)
        assert (again.status_code, again.json()["id"]) == (200, started.json()["id"])
        payment = started.json()
        assert (payment["amount"], payment["status"]) == ("259.80", "PENDING")

        account = requests.post(
            f"{BANK}/accounts", json={"owner": "buyer", "balance": "1000.00"},
            timeout=10,
        ).json()  # fmt: skip
        paid = requests.post(
            payment["pay_url"], json={"account_id": account["id"]}, timeout=10
        )
        assert paid.json()["status"] == "SUCCEEDED", paid.text

        wait_for_status(order, buyer, "PAID", timeout=90)
        listed = call("GET", f"/payments?order_id={order['id']}", buyer).json()
        assert [p["status"] for p in listed["items"]] == ["SUCCEEDED"]
        shown = call("GET", f"/payments/{payment['id']}", buyer).json()
        assert shown["status"] == "SUCCEEDED"

        # The carrier's timer moves the shipment on; its signed callbacks come back
        # through the gateway, delivery and orders.
        wait_for_status(order, buyer, "DELIVERED", timeout=120)
        shipments = call("GET", f"/shipments?order_id={order['id']}", buyer).json()
        (shipment,) = shipments["items"]
        assert shipment["status"] == "DELIVERED"
        history = call("GET", f"/shipments/{shipment['id']}", buyer).json()["events"]
        assert [e["status"] for e in history] == ["CREATED", "IN_TRANSIT", "DELIVERED"]
        product_id = order["items"][0]["product_id"]
        # Two of three sold: the reservation became a sale, nothing is held. Storage
        # confirms the sale from `order.paid` on its own worker, which may come
        # after the shipment's last step.
        deadline = time.monotonic() + 60
        while True:
            product = call("GET", f"/products/{product_id}").json()
            if product["quantity"] != 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (product["quantity"], product["available"]) == (1, 1)
        # And every database agrees, with no grace for anything in flight.
        assert checked_clean(ports).endswith(" invariants checked, 0 violation(s)\n")
    finally:
        launcher.send_signal(signal.SIGTERM)
        output = launcher.communicate(timeout=90)[0]
    assert launcher.returncode == 0, output
