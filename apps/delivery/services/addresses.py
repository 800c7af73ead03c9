"""Buyers' addresses, and the ownership check orders asks for."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Set
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from apps.delivery.errors import (
    AddressInUseError,
    AddressNotFoundError,
    CountryNotServedError,
)
from apps.delivery.models import Address, AddressUse
from chomik.auth import Principal, user_uuid
from chomik.db import Page, compiled_once, paginate, utcnow


def create_address(
    session: Session,
    *,
    user: Principal,
    fields: Mapping[str, Any],
    served_countries: Set[str],
) -> Address:
    """Save a new address of the calling buyer, in a country the carrier serves."""
    country = fields["country"]
    if country not in served_countries:
        raise CountryNotServedError(
            f"The carrier does not deliver to {country}",
            country=country,
            errors={"country": ["The carrier does not deliver to this country."]},
        )
    address = Address(buyer_id=user_uuid(user), **fields)
    session.add(address)
    session.flush()
    return address


def list_addresses(
    session: Session, *, user: Principal, page: int, page_size: int
) -> Page[Address]:
    """Return one page of the caller's addresses (newest first), and the total."""
    query = (
        sa.select(Address)
        .where(Address.buyer_id == user_uuid(user), Address.deleted_at.is_(None))
        .order_by(Address.created_at.desc(), Address.id.desc())
    )
    return paginate(session, query, page=page, page_size=page_size)


def get_buyer_address(
    session: Session, *, buyer_id: uuid.UUID, address_id: uuid.UUID
) -> Address:
    """Return the buyer's address if it exists and is not deleted, else 404."""
    address = session.scalars(
        sa.select(Address).where(
            Address.id == address_id,
            Address.buyer_id == buyer_id,
            Address.deleted_at.is_(None),
        )
    ).one_or_none()
    if address is None:
        raise AddressNotFoundError(f"No address {address_id}")
    return address


def delete_address(session: Session, *, user: Principal, address_id: uuid.UUID) -> None:
    """Hide the caller's address from the list and the ownership check.

    The row stays (soft delete): a paid order's shipment reads it later. An address
    that an order not finished yet ships to is refused (409 `address-in-use`);
    delivery knows those orders from their events (`use_address`, `release_address`),
    so an order placed a moment ago may not be known yet: its shipment still finds
    the address, which is only hidden, never removed.
    """
    address = get_buyer_address(
        session, buyer_id=user_uuid(user), address_id=address_id
    )
    in_use = session.scalar(
        sa.select(AddressUse.order_id).where(AddressUse.address_id == address.id)
    )
    if in_use is not None:
        raise AddressInUseError(
            f"The address is used by order {in_use}, which is not finished"
        )
    address.deleted_at = utcnow()
    session.flush()


def use_address(
    session: Session, *, order_id: uuid.UUID, address_id: uuid.UUID
) -> None:
    """Note that a placed order ships to this address until it ends (idempotent)."""
    session.execute(_USE, {"order_id": order_id, "address_id": address_id})


_USE = compiled_once(
    insert(AddressUse)
    .values(
        order_id=sa.bindparam("order_id", type_=sa.Uuid()),
        address_id=sa.bindparam("address_id", type_=sa.Uuid()),
    )
    .on_conflict_do_nothing(index_elements=["order_id"])
)


def release_address(session: Session, *, order_id: uuid.UUID) -> None:
    """The order ended: its address may be deleted again (idempotent)."""
    session.execute(sa.delete(AddressUse).where(AddressUse.order_id == order_id))
