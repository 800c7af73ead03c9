"""Buyers through the gateway: browse, order, pay at the bank, and the ways they stop.

`Traffic` drives a running system (`chomik run`) over public HTTP only. A burst
places a bounded number of orders within a bounded time; each order follows a
plan drawn from a fixed seed:

| plan     | what the buyer does                                  | final state |
|----------|------------------------------------------------------|-------------|
| `pay`    | pays at the bank with enough money                   | DELIVERED   |
| `poor`   | pays with too little money (the bank refuses)        | EXPIRED     |
| `cancel` | cancels before paying                                | CANCELLED   |
| `expire` | lets the order run out unpaid                        | EXPIRED     |

A request the system could not answer (a refused connection, a 5xx, a timeout)
is retried: the order with its Idempotency-Key, the payment and the cancel because
they are idempotent. `settle` waits until every driven order is in a final state.

From the command line, against a system started with `chomik run`:

    .venv/bin/python -m tests.system.traffic --orders 40 --seconds 30 --seed 7
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

FINAL = frozenset({"DELIVERED", "CANCELLED", "EXPIRED"})
PLANS = (("pay", 50), ("poor", 15), ("cancel", 15), ("expire", 20))
PASSWORD = "correct horse battery"
PRICE = Decimal("10.00")
RETRIED = frozenset({500, 502, 503, 504})


class TrafficError(RuntimeError):
    """The system answered what a buyer cannot go on from (not an outage)."""


@dataclass
class User:
    email: str
    token: str = ""


@dataclass
class Order:
    """One driven order: its plan and the last status seen."""

    id: str
    plan: str
    buyer: User
    status: str = "AWAITING_PAYMENT"


@dataclass
class Counts:
    """What a burst did: orders driven, finished by final state, errors met."""

    driven: int = 0
    finished: Counter[str] = field(default_factory=Counter)
    plans: Counter[str] = field(default_factory=Counter)
    unfinished: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def finished_total(self) -> int:
        return sum(self.finished.values())

    def line(self) -> str:
        states = " ".join(f"{k}={v}" for k, v in sorted(self.finished.items()))
        left = " ".join(f"{k}={v}" for k, v in sorted(self.unfinished.items()))
        return (
            f"driven={self.driven} finished={self.finished_total} ({states})"
            + (f" unfinished ({left})" if left else "")
            + f" retries={self.retries} errors={len(self.errors)}"
        )


class Traffic:
    """Buyers and a seller on one running system, reused from burst to burst."""

    def __init__(
        self, gateway: str, bank: str, *, seed: int = 1, buyers: int = 4
    ) -> None:
        self.api = f"{gateway}/api/v1"
        self.bank = f"{bank}/api/v1"
        self.random = random.Random(seed)
        self.buyer_count = buyers
        self.buyers: list[User] = []
        self.seller = User("")
        self.products: list[str] = []
        self.addresses: dict[str, str] = {}
        self.orders: list[Order] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._retries = 0
        self._last: list[Order] = []

    # -- HTTP with retries -------------------------------------------------------

    @property
    def http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(
        self,
        method: str,
        url: str,
        user: User | None = None,
        *,
        patience: float = 180.0,
        **kwargs: Any,
    ) -> requests.Response:
        """One request, retried while the system cannot answer it (for `patience` s)."""
        deadline = time.monotonic() + patience
        delay = 0.2
        while True:
            headers = dict(kwargs.pop("headers", {}) or {})
            if user is not None:
                headers["Authorization"] = f"Bearer {user.token}"
            kwargs["headers"] = headers
            try:
                response = self.http.request(method, url, timeout=30, **kwargs)
            except requests.RequestException as exc:
                failure = f"{method} {url}: {type(exc).__name__}"
            else:
                if response.status_code == 401 and user is not None and user.email:
                    self.log_in(user)
                    continue
                if response.status_code not in RETRIED:
                    return response
                failure = f"{method} {url}: {response.status_code}"
            if time.monotonic() > deadline:
                raise TrafficError(f"gave up after {patience:.0f}s: {failure}")
            with self._lock:
                self._retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def expect(self, response: requests.Response, *codes: int) -> dict[str, Any]:
        if response.status_code not in codes:
            raise TrafficError(
                f"{response.request.method} {response.url}: "
                f"{response.status_code} {response.text[:300]}"
            )
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    # -- the people ----------------------------------------------------------------

    def register(self, role: str) -> User:
        user = User(f"{role}-{uuid.uuid4().hex[:10]}@example.com")
        body = {"email": user.email, "password": PASSWORD, "name": role, "role": role}
        self.expect(self.call("POST", f"{self.api}/auth/register", json=body), 201, 409)
        self.log_in(user)
        return user

    def log_in(self, user: User) -> None:
        body = {"email": user.email, "password": PASSWORD}
        answer = self.call("POST", f"{self.api}/auth/login", json=body)
        user.token = self.expect(answer, 200)["access_token"]

    def setup(self, products: int = 6) -> None:
        """Register the seller and the buyers, list products, add addresses."""
        self.seller = self.register("seller")
        for n in range(products):
            product = self.call(
                "POST", f"{self.api}/products", self.seller,
                json={"title": f"Chaos runner {n}", "brand": "Chomik",
                      "model": f"CR-{n}", "size": str(38 + n), "color": "black",
                      "condition": "new", "price": str(PRICE), "currency": "RUB",
                      "quantity": 100_000},
            )  # fmt: skip
            self.products.append(self.expect(product, 201)["id"])
        for _ in range(self.buyer_count):
            buyer = self.register("buyer")
            address = self.call(
                "POST", f"{self.api}/addresses", buyer,
                json={"recipient": "Anna Petrova", "phone": "+79161234567",
                      "country": "RU", "city": "Moscow", "street": "Tverskaya 7",
                      "postal_code": "125009"},
            )  # fmt: skip
            self.addresses[buyer.email] = self.expect(address, 201)["id"]
            self.buyers.append(buyer)

    # -- one order -------------------------------------------------------------------

    def plan(self) -> tuple[str, User, list[dict[str, Any]], int]:
        """A plan from the seed: what, who, which items, and which search page."""
        names, weights = zip(*PLANS, strict=True)
        what = self.random.choices(names, weights)[0]
        buyer = self.random.choice(self.buyers)
        chosen = self.random.sample(self.products, self.random.randint(1, 2))
        items = [
            {"product_id": p, "quantity": self.random.randint(1, 2)} for p in chosen
        ]
        return what, buyer, items, self.random.randint(1, 2)

    def drive(
        self, what: str, buyer: User, items: list[dict[str, Any]], page: int
    ) -> Order:
        """Browse, order, and then pay, pay too little, cancel or walk away."""
        self.expect(
            self.call(
                "GET", f"{self.api}/products",
                params={"brand": "Chomik", "page": page, "page_size": 3},
            ),
            200,
        )  # fmt: skip
        for item in items:
            self.expect(
                self.call("GET", f"{self.api}/products/{item['product_id']}"), 200
            )
        key = uuid.uuid4().hex
        placed = self.call(
            "POST", f"{self.api}/orders", buyer, headers={"Idempotency-Key": key},
            json={"items": items, "address_id": self.addresses[buyer.email]},
        )  # fmt: skip
        order = Order(self.expect(placed, 200, 201)["id"], what, buyer)
        with self._lock:
            self.orders.append(order)
        if what == "cancel":
            cancelled = self.call("POST", f"{self.api}/orders/{order.id}/cancel", buyer)
            self.expect(cancelled, 200, 409)
        elif what in ("pay", "poor"):
            total = sum(PRICE * item["quantity"] for item in items)
            started = self.call("POST", f"{self.api}/orders/{order.id}/payment", buyer)
            payment = self.expect(started, 200, 201, 409)
            if started.status_code == 409:  # expired meanwhile: a final state too
                return order
            balance = total if what == "pay" else total - Decimal("0.01")
            account = self.call(
                "POST", f"{self.bank}/accounts",
                json={"owner": buyer.email, "balance": str(balance)},
            )  # fmt: skip
            account_id = self.expect(account, 201)["id"]
            paid = self.call(
                "POST", payment["pay_url"], json={"account_id": account_id}
            )
            self.expect(paid, 200, 409)
        return order

    # -- bursts ---------------------------------------------------------------------

    def burst(self, orders: int, seconds: float, concurrency: int = 4) -> Counts:
        """Drive up to `orders` orders, starting none after `seconds`; what it did."""
        counts = Counts()
        plans = [self.plan() for _ in range(orders)]
        stop_at = time.monotonic() + seconds
        retries_before = self._retries
        driven: list[Order] = []

        def one(plan: tuple[str, User, list[dict[str, Any]], int]) -> None:
            if time.monotonic() > stop_at:
                return
            try:
                order = self.drive(*plan)
            except TrafficError as exc:
                with self._lock:
                    counts.errors.append(str(exc))
                return
            with self._lock:
                driven.append(order)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, plans))
        counts.driven = len(driven)
        counts.plans.update(order.plan for order in driven)
        counts.retries = self._retries - retries_before
        self._last = driven
        return counts

    def settle(self, counts: Counts, timeout: float) -> bool:
        """Wait until every order of the last burst is final; fill in `counts`."""
        deadline = time.monotonic() + timeout
        pending = list(self._last)
        while True:
            for order in pending:
                answer = self.call(
                    "GET", f"{self.api}/orders/{order.id}", order.buyer, patience=30
                )
                order.status = self.expect(answer, 200)["status"]
            pending = [order for order in pending if order.status not in FINAL]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        counts.finished = Counter(o.status for o in self._last if o.status in FINAL)
        counts.unfinished = Counter(o.status for o in pending)
        return not pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:17000")
    parser.add_argument("--bank", default="http://127.0.0.1:17006")
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--buyers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle", type=float, default=1200.0,
                        help="seconds to wait for every order to be final")  # fmt: skip
    args = parser.parse_args(argv)
    traffic = Traffic(args.gateway, args.bank, seed=args.seed, buyers=args.buyers)
    traffic.setup()
    started = time.monotonic()
    counts = traffic.burst(args.orders, args.seconds, args.concurrency)
    print(f"driven in {time.monotonic() - started:.1f}s: {counts.line()}", flush=True)
    settled = traffic.settle(counts, args.settle)
    print(f"settled in {time.monotonic() - started:.1f}s: {counts.line()}")
    for error in counts.errors:
        print(f"  {error}")
    return 0 if settled and not counts.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
