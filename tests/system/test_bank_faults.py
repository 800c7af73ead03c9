"""The bank misbehaving in the running system (`chomik run`, one start for the module):
with `BANK_FAULT_DUPLICATE=1` and `BANK_FAULT_REORDER=1` it sends every callback twice
and several transactions' callbacks in reverse order; then, its drop switch turned on
at run time, it sends none and the payment workers' pollers alone settle every
payment. Either way each payment is applied exactly once and reaches its final state:
a success pays the order, a refusal for want of funds fails it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from chomik.apps import APPS
from chomik.infra import free_port, port_is_free
from tests.system import HOST, base_url
from tests.system.test_purchase import call, placed_order, user
from tests.system.test_run import launch, wait_up

pytestmark = pytest.mark.system

BANK = f"{base_url(17006)}/api/v1"
FAULTS = {"BANK_FAULT_DUPLICATE": "1", "BANK_FAULT_REORDER": "1"}
# The poller asks the bank about a payment 30 s after it started (long after the held
# callbacks came), then every few seconds.
POLLING = {"PAYMENT_POLL_AFTER": "30", "PAYMENT_POLL_INTERVAL": "6"}
# Cheap password hashes: logging in is not what is tested here.
HASHING = {"PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024"}
# A paid order goes on to delivery (the carrier steps every 5 s) while the test looks
# at the others, so it may be seen past PAID.
ORDER_AFTER = {
    "SUCCEEDED": {"PAID", "SHIPPED", "DELIVERED"},
    "FAILED": {"PAYMENT_FAILED"},
}


@dataclass(frozen=True)
class System:
    metrics: list[str]  # the payment workers' /metrics
    bank_database: str


@pytest.fixture(scope="module")
def system():
    for spec in APPS:
        assert port_is_free(spec.port, HOST), f"port {spec.port} busy before the test"
    data_dir = tempfile.mkdtemp(prefix="chomik-run-")
    os.chmod(data_dir, 0o755)
    pg_port = free_port()
    env = {
        "EMBEDDED_PG_PORT": str(pg_port), "EMBEDDED_KAFKA_PORT": str(free_port()),
        **FAULTS, **POLLING, **HASHING,
    }  # fmt: skip
    launcher = launch(env, data_dir)
    try:
        lines = "".join(wait_up(launcher))
        metrics = re.findall(r"payment-worker-\d+\s+metrics (\S+)", lines)
        assert len(metrics) == 2, lines
        yield System(
            metrics,
            f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/chomik_bank",
        )
    finally:
        launcher.send_signal(signal.SIGTERM)
        output = launcher.communicate(timeout=90)[0]
        shutil.rmtree(data_dir, ignore_errors=True)
    assert launcher.returncode == 0, output


@dataclass(frozen=True)
class Shop:
    seller: str
    buyer: str
    rich: str  # bank accounts of the buyer
    poor: str


@pytest.fixture(scope="module")
def shop(system):
    return Shop(
        user("seller"), user("buyer"), bank_account("10000.00"), bank_account("1.00")
    )


def results(system):
    """Bank results the payment workers took, summed: {(source, outcome): count}."""
    counts: dict[tuple[str, str], float] = {}
    for url in system.metrics:
        text = requests.get(url, timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "payment_bank_results_total":
                    key = (sample.labels["source"], sample.labels["outcome"])
                    counts[key] = counts.get(key, 0) + sample.value
    return counts


def since(before, after):
    return {key: after[key] - before.get(key, 0) for key in after}


def taken_once(system, before, enough, timeout=30):
    """The results taken since `before`, once `enough` of them (or at the timeout).

    A worker counts a result just after its transaction commits: the order can
    show PAID a moment before the count does.
    """
    deadline = time.monotonic() + timeout
    while True:
        taken = since(before, results(system))
        if enough(taken) or time.monotonic() > deadline:
            return taken
        time.sleep(0.2)


def copies_of(taken):
    """Callbacks recognised as copies of one already taken."""
    return sum(
        taken.get(("callback", o), 0) for o in ("stale", "duplicate", "replayed")
    )


def bank_account(balance):
    response = requests.post(
        f"{BANK}/accounts", json={"owner": "buyer", "balance": balance}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def paid_orders(shop):
    """An order per account, their payments started through the gateway, then paid
    one right after the other at the bank: [(order, payment, the bank's answer)].
    (Orders first: the poller's clock starts with each payment.)"""
    buyer, accounts = shop.buyer, [shop.rich, shop.poor, shop.rich]
    orders = [placed_order(shop.seller, buyer) for _ in accounts]
    started = []
    for order in orders:
        answer = call("POST", f"/orders/{order['id']}/payment", buyer)
        assert answer.status_code == 201, answer.text
        started.append((order, answer.json()))
    paid = []
    for (order, payment), account in zip(started, accounts, strict=True):
        answer = requests.post(
            payment["pay_url"], json={"account_id": account}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        paid.append((order, payment, answer.json()["status"]))
    assert [status for *_, status in paid] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    return paid


def settled(paid, buyer, timeout):
    """Wait until every order left PAYMENT_PENDING; assert where each one ended."""
    deadline = time.monotonic() + timeout
    for order, payment, status in paid:
        while True:
            shown = call("GET", f"/orders/{order['id']}", buyer).json()["status"]
            if shown != "PAYMENT_PENDING" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert shown in ORDER_AFTER[status], (order["id"], shown)
        listed = call("GET", f"/payments?order_id={order['id']}", buyer).json()
        assert [(p["id"], p["status"]) for p in listed["items"]] == [
            (payment["id"], status)
        ]


def sent_order(system, paid):
    """The transactions of `paid` in the order the bank sent their callbacks."""
    references = [payment["id"] for _, payment, _ in paid]
    engine = sa.create_engine(system.bank_database)
    try:
        with engine.connect() as conn:
            return list(
                conn.scalars(
                    sa.text(
                        "SELECT body->>'reference' FROM outgoing_callbacks"
                        " WHERE body->>'reference' = ANY(:refs) ORDER BY sent_at"
                    ),
                    {"refs": references},
                )
            )
    finally:
        engine.dispose()


def test_every_callback_sent_twice_and_in_reverse_order_is_applied_once(system, shop):
    before = results(system)

    paid = paid_orders(shop)
    settled(paid, shop.buyer, timeout=60)

    # The bank held the three callbacks back and let them go newest first ...
    assert sent_order(system, paid) == [p["id"] for _, p, _ in reversed(paid)]
    # ... each twice: every result applied once, by its callback; each copy was
    # recognised and changed nothing.
    taken = taken_once(
        system, before,
        lambda t: t.get(("callback", "applied"), 0) >= 3 and copies_of(t) >= 3,
    )  # fmt: skip
    assert taken.get(("callback", "applied")) == 3, taken
    assert taken.get(("poll", "applied"), 0) == 0, taken
    assert copies_of(taken) >= 3, taken


def test_every_callback_dropped_the_poller_alone_settles_each_payment_once(
    system, shop
):
    switched = requests.put(
        f"{BANK}/admin/faults", json={"drop": 1, "duplicate": 0, "reorder": 0},
        timeout=10,
    )  # fmt: skip
    assert switched.status_code == 200, switched.text
    try:
        before = results(system)

        paid = paid_orders(shop)
        settled(paid, shop.buyer, timeout=90)
    finally:
        requests.delete(f"{BANK}/admin/faults", timeout=10)

    taken = taken_once(system, before, lambda t: t.get(("poll", "applied"), 0) >= 3)
    assert taken.get(("poll", "applied")) == 3, taken
    assert taken.get(("callback", "applied"), 0) == 0, taken
