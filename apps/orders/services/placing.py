"""Placing an order: price it from the catalog, reserve its stock, store it unpaid.

The failure windows, and what covers each:

* Storage refuses (unknown product, not enough stock), or the total is outside what
  one payment can charge (`clients.payment.MIN_AMOUNT`..`MAX_AMOUNT`): nothing was
  reserved.
* Anything fails after the reservation, inside this process: the reservation is
  released at once (by order id; storage answers that idempotently).
* The process dies after reserving, before its transaction commits: a
  `placement_attempts` row, committed on its own before the reservation, is
  still there; the `release_abandoned_placements` job finds it once the order
  would have expired, sees no order and releases the reservation by order id.
  The transaction that stores the order deletes the row, so a placed order is
  released only by its own lifecycle (cancel, expiry).

The order id is derived from the buyer and the Idempotency-Key, so a retry after
a crash reserves under the same id (storage answers the same reservation) and
storage never holds stock twice for it. A retry that comes after the release job
gave that stock back is refused with `idempotency-key-spent`: the key's order id
can hold no stock any more.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import ParamSpec, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from apps.orders.errors import (
    IdempotencyKeyReusedError,
    IdempotencyKeySpentError,
    InsufficientStockError,
    MixedCurrenciesError,
    PlacementInProgressError,
    TooManyUnpaidOrdersError,
    TotalNotPayableError,
    UnknownAddressError,
    UnknownProductsError,
)
from apps.orders.metrics import PLACEMENT_SECONDS
from apps.orders.models import Order, OrderItem, OrderStatusChange, PlacementAttempt
from apps.orders.services.reading import OrderView, view_of
from chomik.auth import Principal, user_uuid
from chomik.db import (
    LockWaitTimeoutError,
    UTCDateTime,
    advisory_xact_lock,
    compiled_once,
    lock_key,
    utcnow,
)
from chomik.messaging.outbox import emit
from clients import payment
from clients import storage as stock
from clients.events import OrderItem as EventItem
from clients.events import OrderPlaced
from clients.orders import OrderStatus

log = logging.getLogger(__name__)
P = ParamSpec("P")

# Order ids of placements: uuid5(buyer id + key) in this namespace.
ORDER_ID_NAMESPACE = uuid.UUID("0b6c1f0e-5a3d-4d1e-9c57-6f1e2a9d4c30")
# The statuses of an order holding its stock unpaid (a buyer may have so many).
UNPAID = (
    OrderStatus.AWAITING_PAYMENT,
    OrderStatus.PAYMENT_PENDING,
    OrderStatus.PAYMENT_FAILED,
)
_UNPAID_LOCKS = 0x0C42  # advisory-lock namespace of a buyer's placements
PLACEMENT_WAIT = 5.0  # seconds a placement waits for the buyer's one before it


class AddressCheck(Protocol):
    """The port to delivery's addresses."""

    def address_belongs_to(self, buyer_id: uuid.UUID, address_id: uuid.UUID) -> bool:
        """Tell whether the address exists and is the buyer's."""
        ...


@dataclass(frozen=True)
class Ports:
    """The outside services placing calls: storage's catalog and stock, addresses."""

    storage: stock.StorageClient
    addresses: AddressCheck


@dataclass(frozen=True)
class OrderRequest:
    """What a buyer asks for: product lines and an address."""

    lines: Mapping[uuid.UUID, int]  # product id -> quantity
    address_id: uuid.UUID


@dataclass(frozen=True)
class Placed:
    """The placed order, and whether this call placed it (False: already placed)."""

    order: OrderView
    created: bool


def order_id_for(buyer_id: uuid.UUID, idempotency_key: str) -> uuid.UUID:
    """The order id of a buyer's placement under one Idempotency-Key."""
    return uuid.uuid5(ORDER_ID_NAMESPACE, f"{buyer_id}\n{idempotency_key}")


def _observed(place: Callable[P, Placed]) -> Callable[P, Placed]:
    """Observe a placement's latency by its outcome."""

    @functools.wraps(place)
    def observed(*args: P.args, **kwargs: P.kwargs) -> Placed:
        started = time.perf_counter()
        outcome = "refused"
        try:
            placed = place(*args, **kwargs)
            outcome = "placed" if placed.created else "replayed"
            return placed
        except InsufficientStockError:
            outcome = "insufficient_stock"
            raise
        finally:
            PLACEMENT_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    return observed


@_observed
def place_order(
    session: Session,
    *,
    buyer: Principal,
    request: OrderRequest,
    idempotency_key: str,
    storage: stock.StorageClient,
    addresses: AddressCheck,
    attempts: sessionmaker[Session],
    ttl: dt.timedelta,
    max_unpaid: int,
) -> Placed:
    """Price, check, reserve and store an order AWAITING_PAYMENT; emit order.placed.

    `attempts` opens short transactions of their own for the placement-attempt
    row (see the module docstring); everything else is in the caller's.
    Raises UnknownProductsError, MixedCurrenciesError, TotalNotPayableError,
    UnknownAddressError, IdempotencyKeyReusedError (422), InsufficientStockError,
    TooManyUnpaidOrdersError and IdempotencyKeySpentError (409). Its latency is
    observed by outcome.
    """
    buyer_id = user_uuid(buyer)
    order_id = order_id_for(buyer_id, idempotency_key)
    existing = session.get(Order, order_id)
    if existing is not None:  # placed under this key before
        return Placed(_replayed(existing, request), created=False)
    products = _priced(storage, request.lines)
    _check_stock(products, request.lines)
    _check_payable(
        _total((products[p].price, n) for p, n in request.lines.items()),
        next(iter(products.values())).currency,
    )
    if not addresses.address_belongs_to(buyer_id, request.address_id):
        raise UnknownAddressError(
            {"address_id": ["Not one of your addresses."]},
            f"Address {request.address_id} is not one of yours",
        )
    _check_unpaid(session, buyer_id, max_unpaid)
    with _attempt(attempts, order_id, buyer_id, ttl):
        reservation = _reserve(storage, order_id, request.lines)
        with _released_on_failure(storage, order_id):
            order = _store(
                session, order_id, buyer_id, request, products, reservation, ttl
            )
    return Placed(view_of(order), created=True)


def _replayed(order: Order, request: OrderRequest) -> OrderView:
    """The order a key placed, if this request asks for the same; else 422."""
    lines = {item.product_id: item.quantity for item in order.items}
    if lines != dict(request.lines) or order.address_id != request.address_id:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was used for another order"
        )
    return view_of(order)


def _priced(
    storage: stock.StorageClient, lines: Mapping[uuid.UUID, int]
) -> dict[uuid.UUID, stock.Product]:
    """Every product of the lines from the catalog, in one call; 422 naming the
    unknown ones."""
    found = storage.get_products(lines)
    products = {p: found[p] for p in lines if p in found}
    unknown = {
        f"items.{index}.product_id": ["Unknown or archived product."]
        for index, product_id in enumerate(lines)
        if product_id not in found
    }
    if unknown:
        ids = [str(p) for p in lines if p not in products]
        raise UnknownProductsError(unknown, ids)
    currencies = {p.currency for p in products.values()}
    if len(currencies) > 1:
        raise MixedCurrenciesError(
            {"items": [f"Items are in {', '.join(sorted(currencies))}."]},
            "An order is paid in one currency: order these items separately",
        )
    return products


def _total(lines: Iterable[tuple[Decimal, int]]) -> Decimal:
    """The total of (unit price, quantity) lines."""
    return sum((price * quantity for price, quantity in lines), Decimal("0"))


def _check_payable(total: Decimal, currency: str) -> None:
    """422 naming the total unless one payment can charge it (storage takes prices
    from 0, and many lines of many units add up beyond what the bank takes)."""
    if not payment.MIN_AMOUNT <= total <= payment.MAX_AMOUNT:
        raise TotalNotPayableError(
            total, currency, minimum=payment.MIN_AMOUNT, maximum=payment.MAX_AMOUNT
        )


def _check_stock(
    products: Mapping[uuid.UUID, stock.Product], lines: Mapping[uuid.UUID, int]
) -> None:
    """409 naming every product short of stock now (storage re-checks atomically)."""
    short = [str(p) for p, n in lines.items() if products[p].available < n]
    if short:
        raise _short(short)


def _check_unpaid(session: Session, buyer_id: uuid.UUID, limit: int) -> None:
    """409 when the buyer has `limit` orders holding stock unpaid already.

    The buyer's placements wait for each other here (a lock held until the
    transaction ends), so two at once cannot both take the last place; at most
    `PLACEMENT_WAIT` seconds, then 409 placement-in-progress with Retry-After.
    """
    key = lock_key(buyer_id.bytes)
    try:
        advisory_xact_lock(session, _UNPAID_LOCKS, key, wait=PLACEMENT_WAIT)
    except LockWaitTimeoutError as exc:
        raise PlacementInProgressError(math.ceil(PLACEMENT_WAIT)) from exc
    held = session.execute(
        sa.select(sa.func.count())
        .select_from(Order)
        .where(Order.buyer_id == buyer_id, Order.status.in_(UNPAID))
    ).scalar_one()
    if held >= limit:
        raise TooManyUnpaidOrdersError(limit)


def _short(product_ids: Sequence[str]) -> InsufficientStockError:
    return InsufficientStockError(
        f"Not enough stock of {', '.join(product_ids)}", product_ids=list(product_ids)
    )


@contextmanager
def _attempt(
    attempts: sessionmaker[Session],
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    ttl: dt.timedelta,
) -> Iterator[None]:
    """Keep a committed attempt row while stock may be held without an order.

    A retry after a crash finds the row of its first attempt and pushes its due
    time on; one whose first attempt is already due for release (or released) is
    refused: the key is spent. A refusal that reserved nothing takes a row this
    call made away again; any other failure leaves it for the release job.
    """
    with attempts.begin() as own:
        fresh = own.scalar(
            _UPSERT_ATTEMPT,
            {"order_id": order_id, "buyer_id": buyer_id, "due": utcnow() + ttl},
        )
    if fresh is None:
        raise IdempotencyKeySpentError(
            "A placement with this Idempotency-Key was given up; use a new key"
        )
    try:
        yield
    except (
        InsufficientStockError,
        UnknownProductsError,
        IdempotencyKeyReusedError,
        IdempotencyKeySpentError,
    ):
        if fresh:
            with attempts.begin() as own:
                own.execute(
                    sa.delete(PlacementAttempt).where(
                        PlacementAttempt.order_id == order_id
                    )
                )
        raise


def _upsert_attempt_statement() -> sa.Executable:
    """Insert the attempt, or renew one not yet due nor claimed; answer whether it
    was inserted (no row: the existing one is being or was released)."""
    insert = pg_insert(PlacementAttempt).values(
        order_id=sa.bindparam("order_id", type_=sa.Uuid()),
        buyer_id=sa.bindparam("buyer_id", type_=sa.Uuid()),
        next_check_at=sa.bindparam("due", type_=UTCDateTime()),
    )
    return compiled_once(
        insert.on_conflict_do_update(
            index_elements=[PlacementAttempt.order_id],
            set_={"next_check_at": insert.excluded.next_check_at},
            where=sa.and_(
                PlacementAttempt.next_check_at > sa.func.now(),
                PlacementAttempt.claim_token.is_(None),
            ),
        ).returning(sa.literal_column("xmax = 0", sa.Boolean()))
    )


_UPSERT_ATTEMPT = _upsert_attempt_statement()


@contextmanager
def _released_on_failure(
    storage: stock.StorageClient, order_id: uuid.UUID
) -> Iterator[None]:
    """Give the reservation back if the block fails; the block's error propagates.

    A release that fails too is left to the release job (the attempt row stays).
    """
    try:
        yield
    except BaseException:
        try:
            storage.release(order_id)
        except stock.ClientError:
            log.warning(
                "order %s: release failed; left to the job", order_id, exc_info=True
            )
        raise


def _reserve(
    storage: stock.StorageClient, order_id: uuid.UUID, lines: Mapping[uuid.UUID, int]
) -> stock.Reservation:
    """Reserve all lines under the order id; storage's refusals become ours."""
    try:
        return storage.reserve(
            order_id, [stock.StockItem(p, n) for p, n in lines.items()]
        )
    except stock.InsufficientStockError as exc:
        raise _short([exc.product_id or "?"]) from exc
    except stock.ProductNotFoundError as exc:
        ids = [exc.product_id or "?"]
        raise UnknownProductsError(
            {"items": ["Unknown or archived product."]}, ids
        ) from exc
    except stock.ReservationMismatchError as exc:
        # The order id is the key's: a placement under it reserved other items.
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was used for another order"
        ) from exc
    except stock.IllegalTransitionError as exc:
        # A placement under this key failed after reserving and released the stock.
        raise IdempotencyKeySpentError(
            "A placement with this Idempotency-Key failed; use a new key"
        ) from exc


def _store(
    session: Session,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    request: OrderRequest,
    products: Mapping[uuid.UUID, stock.Product],
    reservation: stock.Reservation,
    ttl: dt.timedelta,
) -> Order:
    """Insert the order as reserved (titles and prices as storage held them)."""
    currencies = {item.currency for item in reservation.items}
    if len(currencies) > 1:  # a price changed currency between reading and reserving
        raise MixedCurrenciesError({"items": ["Items are in several currencies."]})
    items = [
        OrderItem(
            product_id=item.product_id,
            seller_id=products[item.product_id].seller_id,
            title=item.title,
            quantity=item.quantity,
            unit_price=item.unit_price,
        )
        for item in reservation.items
    ]
    currency = currencies.pop()
    total = _total((i.unit_price, i.quantity) for i in items)
    _check_payable(total, currency)  # a price changed between reading and reserving
    expires_at = utcnow() + ttl
    order = Order(
        id=order_id,
        buyer_id=buyer_id,
        status=OrderStatus.AWAITING_PAYMENT,
        address_id=request.address_id,
        currency=currency,
        total=total,
        expires_at=expires_at,
        next_check_at=expires_at,
        items=items,
    )
    session.add(order)
    session.add(
        OrderStatusChange(
            order_id=order_id, to_status=OrderStatus.AWAITING_PAYMENT, reason="placed"
        )
    )
    session.execute(
        sa.delete(PlacementAttempt).where(PlacementAttempt.order_id == order_id)
    )
    session.flush()
    emit(session, _placed_event(order))
    return order


def _placed_event(order: Order) -> OrderPlaced:
    return OrderPlaced(
        order_id=str(order.id),
        buyer_id=str(order.buyer_id),
        address_id=str(order.address_id),
        currency=order.currency,
        total=order.total,
        items=tuple(EventItem(str(i.product_id), i.quantity) for i in order.items),
    )
