"""Orders as shops report them: state snapshots that arrive twice, late, or out
of order, in one shape for every shop.

Shop connectors (partnerloop.integrations.*) turn a vendor's payload into
these values; the functions here apply them so that the end state does not
depend on delivery order:
- an order is recorded once (program, order id); later snapshots update it;
- a snapshot older than the newest one applied (the shop's updated_at) changes
  nothing;
- status only moves forward: pending -> paid -> cancelled; a paid order earns
  its commission, a cancelled one has it reversed (or clawed back if paid out);
- refunds are facts with the shop's own id: counted once, whether they come
  alone, inside an order snapshot, or before their order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.analytics import service as analytics
from partnerloop.attribution import service as attribution
from partnerloop.commissions import service as commissions
from partnerloop.core.clock import day_of
from partnerloop.core.crypto import FieldCipher, looks_like_email, normalise_email
from partnerloop.core.db import insert_if_absent
from partnerloop.core.errors import InvalidInput
from partnerloop.core.ids import has_kind, new_id
from partnerloop.core.money import format_amount
from partnerloop.orders import service as orders
from partnerloop.orders.models import Conversion, Customer, Subscription
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.tracking import service as tracking


@dataclass(frozen=True)
class OrderLine:
    quantity: int
    unit_price_minor: int
    total_minor: int  # after the line's discounts, without tax
    line_id: str | None = None
    sku: str | None = None
    name: str | None = None

    def as_item(self, currency: str) -> dict[str, Any]:
        return {
            "id": self.line_id,
            "sku": self.sku,
            "name": self.name,
            "quantity": self.quantity,
            "unit_price": format_amount(self.unit_price_minor, currency),
            "total": format_amount(self.total_minor, currency),
        }


@dataclass(frozen=True)
class CustomerFacts:
    external_id: str | None = None
    email: str | None = None
    name: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RefundFacts:
    refund_id: str
    order_id: str
    # The part of the commission base given back: refunded lines without tax;
    # capped at what is left of the order when applied.
    amount_minor: int
    currency: str
    refunded_at: datetime | None = None


@dataclass(frozen=True)
class OrderSnapshot:
    order_id: str  # the shop's stable id
    currency: str
    # The commission base: lines after discounts, without tax and shipping.
    subtotal_minor: int
    total_minor: int
    status: str  # pending | paid | cancelled
    ordered_at: datetime
    updated_at: datetime | None = None
    tax_minor: int | None = None
    shipping_minor: int | None = None
    discount_minor: int | None = None
    number: str | None = None  # the customer-facing order number
    lines: tuple[OrderLine, ...] = ()
    coupon_codes: tuple[str, ...] = ()
    click_id: str | None = None
    customer: CustomerFacts | None = None
    refunds: tuple[RefundFacts, ...] = ()
    subscription_id: str | None = None
    is_renewal: bool = False


@dataclass(frozen=True)
class Cancellation:
    """The shop cancelled or deleted an order and sent only its id (WooCommerce
    order.deleted, Shopify orders/delete); a full cancelled state comes as an
    OrderSnapshot with status `cancelled` instead."""

    order_id: str
    reason: str


@dataclass(frozen=True)
class Applied:
    conversion: Conversion
    outcome: str  # created | updated | unchanged | stale


def clean_click_id(value: str | None) -> str | None:
    """A click id read from a shop's free-form field (landing URL, note attribute):
    used only if it is one of ours, so a stray value never rejects the order."""
    if value is None:
        return None
    value = value.strip()
    return value if has_kind(value, "click") and len(value) <= orders.MAX_CLICK_ID else None


def _pick_coupon(session: Session, *, program_id: str, codes: tuple[str, ...]) -> str | None:
    """Of several discount codes, the first that is an affiliate's coupon, else the first."""
    usable = [code.strip() for code in codes if code and code.strip()]
    usable = [code for code in usable if len(code) <= orders.MAX_COUPON]
    for code in usable:
        if tracking.find_coupon(session, program_id=program_id, code=code) is not None:
            return code
    return usable[0] if usable else None


def _check(snapshot: OrderSnapshot) -> None:
    if snapshot.status not in orders.ORDER_STATUSES:
        raise InvalidInput(
            f"Unknown order status {snapshot.status!r}.", code="invalid_status", field="status"
        )
    for name in ("subtotal_minor", "total_minor"):
        if getattr(snapshot, name) < 0:
            raise InvalidInput(
                f"The order's {name.removesuffix('_minor')} is negative.",
                code="invalid_amount",
                field=name.removesuffix("_minor"),
            )


def _email(customer: CustomerFacts | None) -> str | None:
    # Shops hold addresses we would refuse from a form; an odd one is dropped, not fatal.
    if customer is None or not customer.email or not looks_like_email(customer.email):
        return None
    return customer.email


def apply_order(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    source: str,
    connector_id: str | None,
    snapshot: OrderSnapshot,
    now: datetime,
) -> Applied:
    _check(snapshot)
    program = programs.get_or_raise(session, program_id)
    orders.lock_order(session, program_id=program_id, order_id=snapshot.order_id)
    conversion = orders.lock_conversion(session, program_id=program_id, order_id=snapshot.order_id)
    if conversion is None:
        customer = snapshot.customer
        recorded = orders.record_conversion(
            session,
            cipher,
            orders.OrderInput(
                program_id=program_id,
                order_id=snapshot.order_id,
                amount_minor=snapshot.subtotal_minor,
                currency=snapshot.currency,
                source=source,
                click_id=clean_click_id(snapshot.click_id),
                coupon_code=_pick_coupon(
                    session, program_id=program_id, codes=snapshot.coupon_codes
                ),
                customer_email=_email(customer),
                customer_external_id=customer.external_id if customer else None,
                customer_name=customer.name if customer else None,
                items=[line.as_item(snapshot.currency) for line in snapshot.lines],
                ordered_at=snapshot.ordered_at,
                # A first sight of a cancelled order is recorded, then cancelled below.
                status="pending" if snapshot.status == "cancelled" else snapshot.status,
                total_minor=snapshot.total_minor,
                tax_minor=snapshot.tax_minor,
                shipping_minor=snapshot.shipping_minor,
                discount_minor=snapshot.discount_minor,
                order_number=snapshot.number,
                connector_id=connector_id,
                subscription_id=snapshot.subscription_id,
                is_renewal=snapshot.is_renewal,
                source_updated_at=snapshot.updated_at,
            ),
            now=now,
            strict_replay=False,
            locked_and_absent=True,
        )
        if recorded.created:
            conversion = recorded.conversion
            if snapshot.status == "cancelled":
                cancel(session, cipher, conversion=conversion, now=now)
            outcome = "created"
        else:
            # Another worker recorded this order first (two states of a new order
            # processed at once): apply this state on top of theirs.
            conversion = orders.lock_conversion(
                session, program_id=program_id, order_id=snapshot.order_id
            )
            assert conversion is not None
            outcome = _apply_state(session, cipher, program, conversion, snapshot, now)
    else:
        outcome = _apply_state(session, cipher, program, conversion, snapshot, now)
    if snapshot.subscription_id:
        _track_subscription(session, program_id=program_id, conversion=conversion, now=now)
    for refund in snapshot.refunds:
        apply_refund(session, cipher, program_id=program_id, refund=refund, now=now)
    return Applied(conversion=conversion, outcome=outcome)


def _apply_state(
    session: Session,
    cipher: FieldCipher,
    program: Program,
    conversion: Conversion,
    snapshot: OrderSnapshot,
    now: datetime,
) -> str:
    """A later (or concurrent) state of a recorded order; returns the outcome word."""
    if _is_stale(conversion, snapshot):
        return "stale"
    if snapshot.currency != conversion.currency:
        raise InvalidInput(
            f"Order {snapshot.order_id} was recorded in {conversion.currency}, not "
            f"{snapshot.currency}.",
            code="currency_mismatch",
            field="currency",
        )
    return (
        "updated" if _update(session, cipher, program, conversion, snapshot, now) else "unchanged"
    )


def _is_stale(conversion: Conversion, snapshot: OrderSnapshot) -> bool:
    return (
        snapshot.updated_at is not None
        and conversion.source_updated_at is not None
        and snapshot.updated_at < conversion.source_updated_at
    )


def _update(
    session: Session,
    cipher: FieldCipher,
    program: Program,
    conversion: Conversion,
    snapshot: OrderSnapshot,
    now: datetime,
) -> bool:
    changed = False
    if snapshot.updated_at is not None and snapshot.updated_at != conversion.source_updated_at:
        conversion.source_updated_at = snapshot.updated_at
        changed = True
    if conversion.status == "cancelled":
        # Final: a shop re-opening a cancelled order is not followed (no commission revived).
        return changed
    for name, value in (
        ("total_minor", snapshot.total_minor),
        ("tax_minor", snapshot.tax_minor),
        ("shipping_minor", snapshot.shipping_minor),
        ("discount_minor", snapshot.discount_minor),
        ("order_number", snapshot.number),
    ):
        if value is not None and getattr(conversion, name) != value:
            setattr(conversion, name, value)
            changed = True
    if conversion.affiliate_id is None and _attribute_late(
        session, cipher, program=program, conversion=conversion, snapshot=snapshot, now=now
    ):
        changed = True
    if snapshot.subtotal_minor != conversion.amount_minor:
        _rebase(
            session, cipher, conversion=conversion, amount_minor=snapshot.subtotal_minor, now=now
        )
        conversion.items = [line.as_item(snapshot.currency) for line in snapshot.lines]
        changed = True
    if snapshot.status == "paid" and conversion.status == "pending":
        conversion.status = "paid"
        orders.commission_for(session, cipher, program=program, conversion=conversion, now=now)
        changed = True
    elif snapshot.status == "cancelled":
        cancel(session, cipher, conversion=conversion, now=now)
        changed = True
    if changed:
        orders.announce(session, cipher, conversion=conversion, topic="conversion.updated", now=now)
    return changed


def _attribute_late(
    session: Session,
    cipher: FieldCipher,
    *,
    program: Program,
    conversion: Conversion,
    snapshot: OrderSnapshot,
    now: datetime,
) -> bool:
    """An order first seen without evidence (e.g. Stripe's invoice before its checkout
    session, a Shopify order whose cart attributes came with an update) is
    attributed when a later state brings a click id or coupon. An order once
    attributed is never moved to another affiliate."""
    click_id = clean_click_id(snapshot.click_id)
    coupon = _pick_coupon(session, program_id=program.id, codes=snapshot.coupon_codes)
    if click_id is None and coupon is None:
        return False
    decided = attribution.attribute(
        session,
        program=program,
        click_id=click_id,
        coupon_code=coupon,
        customer_affiliate_id=None,
        ordered_at=conversion.ordered_at,
    )
    if decided.affiliate_id is None:
        return False
    day = day_of(conversion.ordered_at)
    counted = {
        "conversions": 1,
        "revenue_minor": conversion.amount_minor - conversion.refunded_minor,
    }
    if conversion.status == "cancelled":
        counted["revenue_minor"] = 0
    analytics.add(
        session,
        program_id=program.id,
        affiliate_id=None,
        day=day,
        increments={name: -value for name, value in counted.items()},
    )
    analytics.add(
        session,
        program_id=program.id,
        affiliate_id=decided.affiliate_id,
        day=day,
        increments=counted,
    )
    conversion.affiliate_id = decided.affiliate_id
    conversion.attribution = decided.method
    conversion.click_id = click_id
    conversion.coupon_code = coupon
    if conversion.customer_id is not None:
        customer = session.get(Customer, conversion.customer_id)
        if customer is not None and customer.affiliate_id is None:
            customer.affiliate_id = decided.affiliate_id
            customer.bound_at = now
    orders.commission_for(session, cipher, program=program, conversion=conversion, now=now)
    return True


def _rebase(
    session: Session,
    cipher: FieldCipher,
    *,
    conversion: Conversion,
    amount_minor: int,
    now: datetime,
) -> None:
    """The shop edited the order's amount: revenue and unpaid commissions follow."""
    refunded = min(conversion.refunded_minor, amount_minor)
    old_net = conversion.amount_minor - conversion.refunded_minor
    conversion.amount_minor = amount_minor
    conversion.refunded_minor = refunded
    analytics.add(
        session,
        program_id=conversion.program_id,
        affiliate_id=conversion.affiliate_id,
        day=day_of(conversion.ordered_at),
        increments={"revenue_minor": (amount_minor - refunded) - old_net},
    )
    commissions.recompute(
        session,
        cipher,
        conversion_id=conversion.id,
        gross_minor=amount_minor,
        refunded_minor=refunded,
        now=now,
    )


def cancel(session: Session, cipher: FieldCipher, *, conversion: Conversion, now: datetime) -> None:
    """Cancelled: the order's revenue leaves the rollups and its commission is
    reversed (or clawed back if already paid). Idempotent."""
    if conversion.status == "cancelled":
        return
    conversion.status = "cancelled"
    analytics.add(
        session,
        program_id=conversion.program_id,
        affiliate_id=conversion.affiliate_id,
        day=day_of(conversion.ordered_at),
        increments={"revenue_minor": -(conversion.amount_minor - conversion.refunded_minor)},
    )
    commissions.recompute(
        session,
        cipher,
        conversion_id=conversion.id,
        gross_minor=conversion.amount_minor,
        refunded_minor=conversion.amount_minor,
        now=now,
    )


def apply_cancellation(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    cancellation: Cancellation,
    now: datetime,
) -> Conversion | None:
    """Cancel a recorded order by id; an order we never recorded stays unknown
    (there is nothing to take back)."""
    orders.lock_order(session, program_id=program_id, order_id=cancellation.order_id)
    conversion = orders.lock_conversion(
        session, program_id=program_id, order_id=cancellation.order_id
    )
    if conversion is None or conversion.status == "cancelled":
        return conversion
    cancel(session, cipher, conversion=conversion, now=now)
    orders.announce(session, cipher, conversion=conversion, topic="conversion.updated", now=now)
    return conversion


def apply_refund(
    session: Session, cipher: FieldCipher, *, program_id: str, refund: RefundFacts, now: datetime
) -> orders.RefundResult | None:
    """A shop refund, once per refund id. A refund of nothing commissionable
    (shipping or tax only) changes nothing and is not stored."""
    if refund.amount_minor <= 0:
        return None
    return orders.record_refund(
        session,
        cipher,
        program_id=program_id,
        order_id=refund.order_id,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        refund_id=refund.refund_id,
        now=now,
        cap_to_order=True,
    )


def apply_customer(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    customer: CustomerFacts,
    now: datetime,
) -> Customer | None:
    """A shop's customer record: created on first sight, updated by newer records."""
    programs.get_or_raise(session, program_id)
    email = _email(customer)
    found = orders.find_or_create_customer(
        session,
        cipher,
        program_id=program_id,
        email=email,
        external_id=customer.external_id,
        now=now,
        name=customer.name,
    )
    if found is None:
        return None
    if (
        customer.updated_at is not None
        and found.source_updated_at is not None
        and customer.updated_at < found.source_updated_at
    ):
        return found  # an older record than the one we hold
    if email is not None:
        index = cipher.blind_index(normalise_email(email), field=orders.CUSTOMER_EMAIL_FIELD)
        if found.email_index != index and not _email_taken(session, program_id, index, found.id):
            found.email_enc = cipher.encrypt(
                normalise_email(email), field=orders.CUSTOMER_EMAIL_FIELD
            )
            found.email_index = index
    if customer.name:
        found.name_enc = cipher.encrypt(customer.name, field=orders.CUSTOMER_NAME_FIELD)
    if customer.updated_at is not None:
        found.source_updated_at = customer.updated_at
    return found


def _email_taken(session: Session, program_id: str, index: str, customer_id: str) -> bool:
    # Two shop customers with one address (a guest and an account): keep both records.
    other = session.scalar(
        select(Customer.id).where(
            Customer.program_id == program_id,
            Customer.email_index == index,
            Customer.id != customer_id,
        )
    )
    return other is not None


def _track_subscription(
    session: Session, *, program_id: str, conversion: Conversion, now: datetime
) -> None:
    assert conversion.subscription_id is not None
    insert_if_absent(
        session,
        Subscription.__table__,  # type: ignore[arg-type]
        {
            "id": new_id("subscription"),
            "program_id": program_id,
            "subscription_id": conversion.subscription_id,
            "customer_id": conversion.customer_id,
            "status": "active",
            "created_at": now,
        },
        conflict_columns=("program_id", "subscription_id"),
    )


def end_subscription(
    session: Session, *, program_id: str, subscription_id: str, ended_at: datetime, now: datetime
) -> Subscription:
    """The shop ended a subscription (recorded even if it arrives before the
    subscription's first order): it renews no more, so no more recurring commission."""
    programs.get_or_raise(session, program_id)
    insert_if_absent(
        session,
        Subscription.__table__,  # type: ignore[arg-type]
        {
            "id": new_id("subscription"),
            "program_id": program_id,
            "subscription_id": subscription_id,
            "status": "ended",
            "ended_at": ended_at,
            "created_at": now,
        },
        conflict_columns=("program_id", "subscription_id"),
    )
    subscription = session.scalars(
        select(Subscription).where(
            Subscription.program_id == program_id,
            Subscription.subscription_id == subscription_id,
        )
    ).one()
    if subscription.status != "ended":
        subscription.status = "ended"
        subscription.ended_at = ended_at
    return subscription
