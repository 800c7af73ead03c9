"""The catalog: listing, reading, editing and archiving products."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.storage.errors import ProductNotFoundError, QuantityBelowReservedError
from apps.storage.models import SEARCH_TEXT, Product, ProductCondition
from chomik.auth import Principal, user_uuid
from chomik.db import Page, paginate, utcnow

SORTS: Mapping[str, tuple[Any, ...]] = {
    "price": (Product.price.asc(), Product.id.asc()),
    "-price": (Product.price.desc(), Product.id.desc()),
    "created_at": (Product.created_at.asc(), Product.id.asc()),
    "-created_at": (Product.created_at.desc(), Product.id.desc()),
}
MAX_SEARCH_WORDS = 8


@dataclass(frozen=True)
class ProductFilters:
    """What the product list is narrowed and ordered by."""

    q: str | None = None
    brand: str | None = None
    size: str | None = None
    color: str | None = None
    condition: ProductCondition | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    seller_id: uuid.UUID | None = None
    ids: Sequence[uuid.UUID] | None = None  # only these products
    sort: str = "-created_at"
    page: int = 1
    page_size: int = 20


ProductPage = Page[Product]


def create_product(
    session: Session, *, user: Principal, fields: Mapping[str, Any]
) -> Product:
    """List a new product owned by the calling seller (or admin)."""
    product = Product(seller_id=user_uuid(user), **fields)
    session.add(product)
    session.flush()
    return product


def access_listed_product(session: Session, product_id: uuid.UUID) -> Product:
    """Return a product that is listed (not archived), or raise ProductNotFoundError."""
    product = session.get(Product, product_id)
    if product is None or product.archived_at is not None:
        raise ProductNotFoundError(f"No product {product_id}")
    return product


def access_own_product(
    session: Session, *, user: Principal, product_id: uuid.UUID
) -> Product:
    """Lock and return a listed product the caller may change, else 404.

    Takes the product's row lock (`FOR UPDATE`) for the rest of the transaction.
    Another seller's product is reported as not found.
    """
    query = sa.select(Product).where(
        Product.id == product_id, Product.archived_at.is_(None)
    )
    if not user.is_admin:  # never lock another seller's row, even briefly
        query = query.where(Product.seller_id == user_uuid(user))
    product = session.scalars(
        query.with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    if product is None:
        raise ProductNotFoundError(f"No product {product_id}")
    return product


def update_product(
    session: Session,
    *,
    user: Principal,
    product_id: uuid.UUID,
    changes: Mapping[str, Any],
) -> Product:
    """Change a product's fields; refuse a quantity below what is reserved.

    Holds the product's row lock, so no reservation can slip in between the
    check and the write.
    """
    product = access_own_product(session, user=user, product_id=product_id)
    quantity = changes.get("quantity")
    if quantity is not None and quantity < product.reserved:
        raise QuantityBelowReservedError(
            f"{product.reserved} units are reserved; quantity cannot go below that",
            reserved=product.reserved,
        )
    for name, value in changes.items():
        setattr(product, name, value)
    session.flush()
    return product


def archive_product(
    session: Session, *, user: Principal, product_id: uuid.UUID
) -> None:
    """Take a product off the catalog; it can no longer be listed or reserved.

    Reservations already held on it can still be released or committed.
    """
    product = access_own_product(session, user=user, product_id=product_id)
    product.archived_at = utcnow()
    session.flush()


def list_products(session: Session, *, filters: ProductFilters) -> ProductPage:
    """Return one page of listed products matching the filters, and the total."""
    query = sa.select(Product).where(*_criteria(filters)).order_by(*SORTS[filters.sort])
    return paginate(session, query, page=filters.page, page_size=filters.page_size)


def _criteria(filters: ProductFilters) -> Iterable[sa.ColumnElement[bool]]:
    yield Product.archived_at.is_(None)
    for column, value in (
        (Product.brand, filters.brand),
        (Product.size, filters.size),
        (Product.color, filters.color),
        (Product.condition, filters.condition),
        (Product.seller_id, filters.seller_id),
    ):
        if value is not None:
            yield column == value
    if filters.ids is not None:
        yield Product.id.in_(filters.ids)
    if filters.min_price is not None:
        yield Product.price >= filters.min_price
    if filters.max_price is not None:
        yield Product.price <= filters.max_price
    search = sa.literal_column(SEARCH_TEXT, sa.String())
    words = dict.fromkeys((filters.q or "").lower().split())  # each once, in order
    for word in list(words)[:MAX_SEARCH_WORDS]:
        yield search.like(f"%{_escape_like(word)}%", escape="\\")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
