"""Conversions (orders as partnerloop records them), refunds and customers.

`record_conversion` is the one door every order comes through (REST API,
postback, shop connectors): validate, attribute, commission, roll up and
announce, all in the caller's transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from partnerloop.analytics import service as analytics
from partnerloop.attribution import service as attribution
from partnerloop.commissions import service as commissions
from partnerloop.commissions.models import Commission
from partnerloop.core.clock import day_of
from partnerloop.core.crypto import FieldCipher, looks_like_email, normalise_email
from partnerloop.core.db import insert_if_absent, is_postgresql
from partnerloop.core.errors import Conflict, InvalidInput, NotFound
from partnerloop.core.ids import new_id
from partnerloop.core.money import format_amount
from partnerloop.core.rows import as_inserted
from partnerloop.orders.models import Conversion, Customer, Refund
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.sync import service as sync

CUSTOMER_EMAIL_FIELD = "customer.email"
CUSTOMER_NAME_FIELD = "customer.name"
ORDER_STATUSES = ("pending", "paid", "cancelled")


@dataclass(frozen=True)
class OrderInput:
    """An order in the one shape every source is normalised to."""

    program_id: str
    order_id: str
    amount_minor: int
    currency: str
    source: str
    click_id: str | None = None
    coupon_code: str | None = None
    customer_email: str | None = None
    customer_external_id: str | None = None
    items: list[dict[str, Any]] | None = None
    ordered_at: datetime | None = None
    # pending: placed but not paid, recorded without a commission until it is paid.
    status: str = "paid"
    total_minor: int | None = None
    tax_minor: int | None = None
    shipping_minor: int | None = None
    discount_minor: int | None = None
    order_number: str | None = None
    connector_id: str | None = None
    customer_name: str | None = None
    subscription_id: str | None = None
    is_renewal: bool = False
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class Recorded:
    conversion: Conversion
    commissions: list[Commission] = field(default_factory=list)
    created: bool = True  # False: this order was already recorded (a replay)


def _check_program_currency(program: Program, currency: str) -> None:
    if currency != program.currency:
        raise InvalidInput(
            f"This program runs in {program.currency}; report amounts in {program.currency}, "
            f"not {currency}.",
            code="currency_mismatch",
            field="currency",
        )


# Column widths, checked before anything is written: too long is a clear 422, never a
# database error on one backend and a silent truncation on the other.
MAX_CLICK_ID = 32
MAX_COUPON = 64
MAX_EXTERNAL_ID = 255


def check_references(
    *,
    order_id: str,
    click_id: str | None = None,
    coupon: str | None = None,
    customer_id: str | None = None,
    customer_email: str | None = None,
    refund_id: str | None = None,
) -> str:
    """Validate the ids and codes an order or refund refers to; returns the clean order id.
    Every entry point (REST, postback, shop connectors) calls this before storing."""
    cleaned = order_id.strip()
    if not cleaned or len(cleaned) > MAX_EXTERNAL_ID:
        raise InvalidInput(
            f"order_id must be 1 to {MAX_EXTERNAL_ID} characters.",
            code="invalid_order_id",
            field="order_id",
        )
    for field_name, value, limit in (
        ("click_id", click_id, MAX_CLICK_ID),
        ("coupon", coupon, MAX_COUPON),
        ("customer_id", customer_id, MAX_EXTERNAL_ID),
        ("refund_id", refund_id, MAX_EXTERNAL_ID),
    ):
        if value is not None and not 1 <= len(value) <= limit:
            raise InvalidInput(
                f"{field_name} must be 1 to {limit} characters.",
                code=f"invalid_{field_name}",
                field=field_name,
            )
    if customer_email is not None and not looks_like_email(customer_email):
        raise InvalidInput(
            "customer_email is not an e-mail address.", code="invalid_email", field="customer_email"
        )
    return cleaned


def find_conversion(session: Session, *, program_id: str, order_id: str) -> Conversion | None:
    return session.scalar(
        select(Conversion).where(
            Conversion.program_id == program_id, Conversion.order_id == order_id
        )
    )


def _replay(
    session: Session, existing: Conversion, order: OrderInput, *, strict: bool = True
) -> Recorded:
    if strict and (
        existing.amount_minor != order.amount_minor or existing.currency != order.currency
    ):
        raise Conflict(
            f"Order {existing.order_id} was already recorded with amount "
            f"{format_amount(existing.amount_minor, existing.currency)} {existing.currency}; "
            "an order's amount cannot change (report a refund instead).",
            code="order_conflict",
            field="amount",
        )
    return Recorded(
        conversion=existing,
        commissions=commissions.list_for_conversion(session, existing.id),
        created=False,
    )


def find_or_create_customer(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    email: str | None,
    external_id: str | None,
    now: datetime,
    name: str | None = None,
) -> Customer | None:
    """The customer by shop id, else by e-mail; created on first sight.

    A customer first known by e-mail (an API or postback report) who then comes
    with the shop's id is the same customer and gets that id. A second shop
    account with an address another account already has is a customer of its
    own, found by its id (the e-mail index stays with the first).
    """
    index = (
        cipher.blind_index(normalise_email(email), field=CUSTOMER_EMAIL_FIELD) if email else None
    )
    if external_id:
        found, by_email = _customers_by(session, program_id, external_id, index)
        if found is None and by_email is not None and by_email.external_id is None:
            by_email.external_id = external_id
            found = by_email
        if found is not None:
            if name and found.name_enc is None:
                found.name_enc = cipher.encrypt(name, field=CUSTOMER_NAME_FIELD)
            return found
    elif index is None:
        return None
    values: dict[str, Any] = {
        "id": new_id("customer"),
        "program_id": program_id,
        "external_id": external_id,
        "email_index": index,
        "created_at": now,
    }
    if email:
        values["email_enc"] = cipher.encrypt(normalise_email(email), field=CUSTOMER_EMAIL_FIELD)
    if name:
        values["name_enc"] = cipher.encrypt(name, field=CUSTOMER_NAME_FIELD)
    # Any unique clash (a concurrent first sight by id or by e-mail) skips the insert.
    if insert_if_absent(session, Customer.__table__, values, conflict_columns=()):  # type: ignore[arg-type]
        return as_inserted(session, Customer, values)
    if external_id:
        found = _customer_by(session, program_id, external_id=external_id)
        if found is None:  # the address belongs to another shop account: keep both
            values["email_index"] = None
            insert_if_absent(session, Customer.__table__, values, conflict_columns=())  # type: ignore[arg-type]
            found = _customer_by(session, program_id, external_id=external_id)
        assert found is not None
        return found
    return _customer_by(session, program_id, email_index=index)


def _customers_by(
    session: Session, program_id: str, external_id: str, email_index: str | None
) -> tuple[Customer | None, Customer | None]:
    """The customer with this shop id and the one with this e-mail (perhaps the
    same), in one query: a new customer was two."""
    if email_index is None:
        return _customer_by(session, program_id, external_id=external_id), None
    rows = session.scalars(
        select(Customer).where(
            Customer.program_id == program_id,
            or_(Customer.external_id == external_id, Customer.email_index == email_index),
        )
    ).all()
    return (
        next((row for row in rows if row.external_id == external_id), None),
        next((row for row in rows if row.email_index == email_index), None),
    )


def _customer_by(
    session: Session,
    program_id: str,
    *,
    external_id: str | None = None,
    email_index: str | None = None,
) -> Customer | None:
    query = select(Customer).where(Customer.program_id == program_id)
    if external_id is not None:
        query = query.where(Customer.external_id == external_id)
    else:
        query = query.where(Customer.email_index == email_index)
    return session.scalar(query)


def _bind_customer(
    session: Session, *, customer: Customer, affiliate_id: str, now: datetime
) -> None:
    # First affiliate wins, atomically: two orders of a new customer racing each
    # other cannot both bind them.
    session.execute(
        update(Customer)
        .where(Customer.id == customer.id, Customer.affiliate_id.is_(None))
        .values(affiliate_id=affiliate_id, bound_at=now)
    )


def record_conversion(
    session: Session,
    cipher: FieldCipher,
    order: OrderInput,
    *,
    now: datetime,
    strict_replay: bool = True,
    locked_and_absent: bool = False,
) -> Recorded:
    """Record an order once. Reported again, it answers the recorded conversion
    (created=False); with `strict_replay` a different amount is a Conflict, without
    it the caller (a shop's state update) reconciles the difference itself.

    `locked_and_absent`: the caller took the order's lock (lock_order) in this
    transaction and found no conversion of `order.order_id` since, so neither is
    done again (a lock and a SELECT per order)."""
    program = programs.get_or_raise(session, order.program_id)
    _check_program_currency(program, order.currency)
    if not locked_and_absent:
        lock_order(session, program_id=order.program_id, order_id=order.order_id)
    order_id = check_references(
        order_id=order.order_id,
        click_id=order.click_id,
        coupon=order.coupon_code,
        customer_id=order.customer_external_id,
        customer_email=order.customer_email,
    )
    # The caller looked for the id as given; a cleaned one (spaces cut) is looked for.
    if not locked_and_absent or order_id != order.order_id:
        existing = find_conversion(session, program_id=program.id, order_id=order_id)
        if existing is not None:
            return _replay(session, existing, order, strict=strict_replay)

    ordered_at = order.ordered_at or now
    customer = find_or_create_customer(
        session,
        cipher,
        program_id=program.id,
        email=order.customer_email,
        external_id=order.customer_external_id,
        now=now,
        name=order.customer_name,
    )
    decided = attribution.attribute(
        session,
        program=program,
        click_id=order.click_id,
        coupon_code=order.coupon_code,
        customer_affiliate_id=customer.affiliate_id if customer else None,
        ordered_at=ordered_at,
    )
    conversion_id = new_id("conversion")
    values: dict[str, Any] = {
        "id": conversion_id,
        "program_id": program.id,
        "order_id": order_id,
        "amount_minor": order.amount_minor,
        "currency": order.currency,
        "refunded_minor": 0,
        "items": order.items,
        "click_id": order.click_id,
        "coupon_code": order.coupon_code,
        "customer_id": customer.id if customer else None,
        "affiliate_id": decided.affiliate_id,
        "attribution": decided.method,
        "source": order.source,
        "status": order.status,
        "total_minor": order.total_minor,
        "tax_minor": order.tax_minor,
        "shipping_minor": order.shipping_minor,
        "discount_minor": order.discount_minor,
        "order_number": order.order_number,
        "connector_id": order.connector_id,
        "subscription_id": order.subscription_id,
        "is_renewal": order.is_renewal,
        "source_updated_at": order.source_updated_at,
        "ordered_at": ordered_at,
        "created_at": now,
    }
    inserted = insert_if_absent(
        session,
        Conversion.__table__,  # type: ignore[arg-type]
        values,
        conflict_columns=("program_id", "order_id"),
    )
    if not inserted:
        # A concurrent report of the same order won the race; it did all the work.
        winner = find_conversion(session, program_id=program.id, order_id=order_id)
        assert winner is not None
        return _replay(session, winner, order, strict=strict_replay)

    conversion = as_inserted(session, Conversion, values)
    day = day_of(ordered_at)
    analytics.add(
        session,
        program_id=program.id,
        affiliate_id=decided.affiliate_id,
        day=day,
        increments={"conversions": 1, "revenue_minor": order.amount_minor},
    )
    if customer is not None and decided.affiliate_id is not None:
        _bind_customer(session, customer=customer, affiliate_id=decided.affiliate_id, now=now)

    made: list[Commission] = []
    if order.status == "paid":
        made = commission_for(session, cipher, program=program, conversion=conversion, now=now)
    announce(session, cipher, conversion=conversion, topic="conversion.created", now=now)
    if _apply_pending_refunds(session, cipher, conversion=conversion, now=now):
        made = commissions.list_for_conversion(session, conversion.id)
    # Else the new conversion's commissions are the ones just made: no other
    # transaction can have made one for a conversion it cannot see yet.
    return Recorded(conversion=conversion, commissions=made)


def earns_commission(program: Program, conversion: Conversion) -> bool:
    """A paid, attributed order earns one; a subscription renewal only if the
    program pays recurring commissions (R12)."""
    if conversion.affiliate_id is None or conversion.status != "paid":
        return False
    return not conversion.is_renewal or program.recurring_commission


def commission_for(
    session: Session,
    cipher: FieldCipher,
    *,
    program: Program,
    conversion: Conversion,
    now: datetime,
) -> list[Commission]:
    """Create the order's commission if it earns one (idempotent); the order's
    commissions if it does, else none."""
    if not earns_commission(program, conversion):
        return []
    assert conversion.affiliate_id is not None
    return commissions.create_for_order(
        session,
        cipher,
        facts=commissions.OrderFacts(
            conversion_id=conversion.id,
            program_id=program.id,
            order_id=conversion.order_id,
            affiliate_id=conversion.affiliate_id,
            gross_minor=conversion.amount_minor,
            refunded_minor=conversion.refunded_minor,
            currency=conversion.currency,
            day=day_of(conversion.ordered_at),
        ),
        now=now,
    )


def announce(
    session: Session, cipher: FieldCipher, *, conversion: Conversion, topic: str, now: datetime
) -> None:
    data = conversion_event(conversion)
    # The key names the state announced: the same state is announced once.
    key = (
        conversion.id
        if topic == "conversion.created"
        else (
            f"{conversion.id}:{conversion.status}:{conversion.amount_minor}:"
            f"{conversion.refunded_minor}:{conversion.affiliate_id or ''}:"
            f"{conversion.source_updated_at.isoformat() if conversion.source_updated_at else ''}"
        )
    )
    sync.publish(
        session, cipher, program_id=conversion.program_id, topic=topic, data=data, key=key, now=now
    )


def conversion_event(conversion: Conversion) -> dict[str, Any]:
    return {
        "id": conversion.id,
        "order_id": conversion.order_id,
        "amount": format_amount(conversion.amount_minor, conversion.currency),
        "currency": conversion.currency,
        "affiliate_id": conversion.affiliate_id,
        "attribution": conversion.attribution,
        "click_id": conversion.click_id,
        "status": conversion.status,
        "refunded_amount": format_amount(conversion.refunded_minor, conversion.currency),
    }


# --- refunds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundResult:
    refund: Refund
    created: bool  # False: a replay of a refund_id we already hold
    applied: bool  # False: its order has not arrived yet; applied when it does


def record_refund(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    order_id: str,
    amount_minor: int,
    currency: str,
    refund_id: str | None,
    now: datetime,
    cap_to_order: bool = False,
) -> RefundResult:
    """Record a refund once per refund_id and apply it to its order.

    `cap_to_order`: shops refund tax and shipping too, which are not part of
    the commission base; such a refund reduces the base to zero at most
    instead of being refused as larger than the order.
    """
    lock_order(session, program_id=program_id, order_id=order_id)
    program = programs.get_or_raise(session, program_id)
    _check_program_currency(program, currency)
    order_id = check_references(order_id=order_id, refund_id=refund_id)
    if amount_minor <= 0:
        raise InvalidInput(
            "A refund amount must be greater than zero.", code="invalid_amount", field="amount"
        )
    if refund_id is not None:
        known = session.scalar(
            select(Refund).where(Refund.program_id == program_id, Refund.refund_id == refund_id)
        )
        if known is not None:
            return _refund_replay(known, order_id=order_id, amount_minor=amount_minor)

    conversion = lock_conversion(session, program_id=program_id, order_id=order_id)
    if (
        conversion is not None
        and not cap_to_order
        and conversion.refunded_minor + amount_minor > conversion.amount_minor
    ):
        left = conversion.amount_minor - conversion.refunded_minor
        raise InvalidInput(
            f"The refund ({format_amount(amount_minor, currency)}) is larger than what is left of "
            f"order {order_id} ({format_amount(left, currency)} of "
            f"{format_amount(conversion.amount_minor, currency)}).",
            code="refund_exceeds_order",
            field="amount",
        )
    refund_row_id = new_id("refund")
    inserted = insert_if_absent(
        session,
        Refund.__table__,  # type: ignore[arg-type]
        {
            "id": refund_row_id,
            "program_id": program_id,
            "order_id": order_id,
            "refund_id": refund_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "created_at": now,
        },
        conflict_columns=("program_id", "refund_id"),
    )
    if not inserted:  # the same refund_id, reported concurrently
        known = session.scalars(
            select(Refund).where(Refund.program_id == program_id, Refund.refund_id == refund_id)
        ).one()
        return _refund_replay(known, order_id=order_id, amount_minor=amount_minor)
    refund = session.get_one(Refund, refund_row_id)
    if conversion is not None:
        _apply(session, cipher, conversion=conversion, refund=refund, now=now)
    return RefundResult(refund=refund, created=True, applied=conversion is not None)


def _refund_replay(known: Refund, *, order_id: str, amount_minor: int) -> RefundResult:
    if known.order_id != order_id or known.amount_minor != amount_minor:
        raise Conflict(
            f"Refund {known.refund_id} was already recorded for order {known.order_id} with amount "
            f"{format_amount(known.amount_minor, known.currency)}.",
            code="refund_conflict",
            field="refund_id",
        )
    return RefundResult(refund=known, created=False, applied=known.applied_at is not None)


def lock_order(session: Session, *, program_id: str, order_id: str) -> None:
    """Hold one order's facts for this transaction: two workers applying events of
    the same order (a refund and the order itself, arriving together) run one
    after the other. Without it each could check the other's row before it was
    committed: a refund stored as waiting for an order that had just been
    recorded stayed waiting for good. An advisory lock, so it works before the
    order's row exists; SQLite's single writer serialises these already."""
    if not is_postgresql(session):
        return
    digest = hashlib.sha256(f"{program_id}\x00{order_id}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def lock_conversion(session: Session, *, program_id: str, order_id: str) -> Conversion | None:
    # Two refunds of one order at once must not both pass the "not more than the
    # order" check: hold the order's row until this transaction ends.
    # populate_existing: the row as it is now that we hold it. An object this
    # session loaded earlier (another job of the same worker transaction) may be
    # older than another worker's commit, and the lock alone does not refresh it.
    query = (
        select(Conversion)
        .where(Conversion.program_id == program_id, Conversion.order_id == order_id)
        .execution_options(populate_existing=True)
    )
    if is_postgresql(session):
        query = query.with_for_update()
    return session.scalar(query)


def _apply(
    session: Session, cipher: FieldCipher, *, conversion: Conversion, refund: Refund, now: datetime
) -> None:
    # A refund that arrived before its order may exceed it; apply what fits.
    applied = min(refund.amount_minor, conversion.amount_minor - conversion.refunded_minor)
    conversion.refunded_minor += applied
    refund.conversion_id = conversion.id
    refund.applied_at = now
    if conversion.status == "cancelled":
        return  # its revenue and commission were already taken back in full
    if applied:
        announce(session, cipher, conversion=conversion, topic="conversion.updated", now=now)
    analytics.add(
        session,
        program_id=conversion.program_id,
        affiliate_id=conversion.affiliate_id,
        day=day_of(conversion.ordered_at),
        increments={"revenue_minor": -applied},
    )
    commissions.recompute(
        session,
        cipher,
        conversion_id=conversion.id,
        gross_minor=conversion.amount_minor,
        refunded_minor=conversion.refunded_minor,
        now=now,
    )


def _apply_pending_refunds(
    session: Session, cipher: FieldCipher, *, conversion: Conversion, now: datetime
) -> int:
    """Refunds that arrived before their order, applied now; returns how many."""
    pending = session.scalars(
        select(Refund)
        .where(
            Refund.program_id == conversion.program_id,
            Refund.order_id == conversion.order_id,
            Refund.conversion_id.is_(None),
        )
        .order_by(Refund.id)
    )
    applied = 0
    for refund in pending:
        _apply(session, cipher, conversion=conversion, refund=refund, now=now)
        applied += 1
    return applied


# --- reading ---------------------------------------------------------------------------------


def get_conversion_or_raise(
    session: Session, conversion_id: str, *, program_id: str | None
) -> Conversion:
    conversion = session.get(Conversion, conversion_id)
    if conversion is None or (program_id is not None and conversion.program_id != program_id):
        raise NotFound(f"No conversion {conversion_id}.", code="conversion_not_found")
    return conversion


def list_conversions(
    session: Session,
    *,
    program_id: str | None,
    affiliate_id: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    after: str | None,
    limit: int,
    order_id: str | None = None,
    source: str | None = None,
    status: str | None = None,
) -> list[Conversion]:
    query = select(Conversion).order_by(Conversion.id).limit(limit)
    if program_id is not None:
        query = query.where(Conversion.program_id == program_id)
    if order_id is not None:
        query = query.where(Conversion.order_id == order_id)
    if source is not None:
        query = query.where(Conversion.source == source)
    if status is not None:
        query = query.where(Conversion.status == status)
    if affiliate_id is not None:
        query = query.where(Conversion.affiliate_id == affiliate_id)
    if created_from is not None:
        query = query.where(Conversion.created_at >= created_from)
    if created_to is not None:
        query = query.where(Conversion.created_at < created_to)
    if after is not None:
        query = query.where(Conversion.id > after)
    return list(session.scalars(query))


@dataclass(frozen=True)
class CustomerView:
    id: str
    external_id: str | None
    email: str | None
    name: str | None
    affiliate_id: str | None


def customer_view(
    session: Session, cipher: FieldCipher, customer_id: str | None
) -> CustomerView | None:
    """A customer with personal data decrypted, for the merchant's own API."""
    if customer_id is None:
        return None
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None
    return CustomerView(
        id=customer.id,
        external_id=customer.external_id,
        email=cipher.decrypt(customer.email_enc, field=CUSTOMER_EMAIL_FIELD)
        if customer.email_enc
        else None,
        name=cipher.decrypt(customer.name_enc, field=CUSTOMER_NAME_FIELD)
        if customer.name_enc
        else None,
        affiliate_id=customer.affiliate_id,
    )
