"""A customer as a CRM should see them: who they are, who referred them, what
they bought. Built from the current rows every time it is needed, so a sync
always sends the latest state and two syncs of one customer cannot undo each
other whatever order they run in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.affiliates.models import Affiliate
from partnerloop.affiliates.service import NAME_FIELD as AFFILIATE_NAME_FIELD
from partnerloop.core.crypto import FieldCipher
from partnerloop.orders.models import Conversion, Customer
from partnerloop.orders.service import CUSTOMER_EMAIL_FIELD, CUSTOMER_NAME_FIELD
from partnerloop.programs.models import Program
from partnerloop.tracking import service as tracking

SUBS = ("sub1", "sub2", "sub3", "sub4", "sub5")


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name:
        return None, None
    first, _, last = name.strip().partition(" ")
    return first or None, last.strip() or None


def _money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": currency}


def customer_facts(session: Session, cipher: FieldCipher, customer_id: str) -> dict[str, Any]:
    """The facts a field mapping reads (partnerloop.integrations.mapping.SOURCE_FIELDS).

    Orders that were cancelled do not count; refunds reduce the lifetime value.
    Personal data is decrypted here, for the CRM call only: never logged or stored.
    """
    customer = session.get_one(Customer, customer_id)
    program = session.get_one(Program, customer.program_id)
    orders = list(
        session.scalars(
            select(Conversion)
            .where(Conversion.customer_id == customer.id, Conversion.status != "cancelled")
            .order_by(Conversion.ordered_at, Conversion.id)
        )
    )
    name = (
        cipher.decrypt(customer.name_enc, field=CUSTOMER_NAME_FIELD) if customer.name_enc else None
    )
    first_name, last_name = _split_name(name)
    affiliate = session.get(Affiliate, customer.affiliate_id) if customer.affiliate_id else None
    first: Conversion | None = orders[0] if orders else None
    last: Conversion | None = orders[-1] if orders else None
    # The click that brought the customer: the first order attributed to one.
    click = None
    for order in orders:
        if order.click_id:
            click = tracking.get_click(session, order.click_id)
            if click is not None:
                break
    coupon = next((o.coupon_code for o in reversed(orders) if o.coupon_code), None)
    facts: dict[str, Any] = {
        "customer_id": customer.id,
        "shop_customer_id": customer.external_id,
        "email": cipher.decrypt(customer.email_enc, field=CUSTOMER_EMAIL_FIELD)
        if customer.email_enc
        else None,
        "name": name,
        "first_name": first_name,
        "last_name": last_name,
        "affiliate_id": customer.affiliate_id,
        "affiliate_name": cipher.decrypt(affiliate.name_enc, field=AFFILIATE_NAME_FIELD)
        if affiliate is not None
        else None,
        "referred_by_affiliate": customer.affiliate_id is not None,
        "first_order_at": first.ordered_at if first else None,
        "last_order_at": last.ordered_at if last else None,
        "last_order_id": last.order_id if last else None,
        "order_count": len(orders),
        "lifetime_value": _money(
            sum(o.amount_minor - o.refunded_minor for o in orders), program.currency
        ),
        "last_order_value": _money(last.amount_minor - last.refunded_minor, program.currency)
        if last
        else None,
        "coupon": coupon,
        "click_source": _host(click.referrer) if click is not None else None,
        "program_id": program.id,
        "program_name": program.name,
    }
    for sub in SUBS:
        facts[sub] = getattr(click, sub) if click is not None else None
    return facts


def _host(url: str | None) -> str | None:
    if not url:
        return None
    return urlsplit(url).hostname or None


def last_change(session: Session, customer_id: str) -> datetime | None:
    """When partnerloop's view of the customer last changed (for newest-wins conflicts)."""
    return session.scalar(
        select(Conversion.created_at)
        .where(Conversion.customer_id == customer_id)
        .order_by(Conversion.created_at.desc())
        .limit(1)
    )


def order_facts(session: Session, cipher: FieldCipher, conversion_id: str) -> dict[str, Any] | None:
    """An order as a CRM deal should see it, now: its net value (the commission base
    less refunds), its stage (open: placed, not paid; won: paid; lost: cancelled
    or refunded in full) and the affiliate who referred it."""
    conversion = session.get(Conversion, conversion_id)
    if conversion is None:
        return None
    net = max(conversion.amount_minor - conversion.refunded_minor, 0)
    if conversion.status == "cancelled" or (conversion.amount_minor > 0 and net == 0):
        stage = "lost"
    elif conversion.status == "pending":
        stage = "open"
    else:
        stage = "won"
    affiliate = session.get(Affiliate, conversion.affiliate_id) if conversion.affiliate_id else None
    return {
        "order_id": conversion.order_id,
        "name": f"Order {conversion.order_number or conversion.order_id}",
        "amount_minor": net,
        "currency": conversion.currency,
        "stage": stage,
        "ordered_at": conversion.ordered_at,
        "customer_id": conversion.customer_id,
        "affiliate": cipher.decrypt(affiliate.name_enc, field=AFFILIATE_NAME_FIELD)
        if affiliate is not None
        else None,
    }
