"""Which affiliate gets an order: the pure rule, no I/O.

Order of evidence (strongest first): the click id the shop passed back, a
coupon bound to an affiliate, a returning customer already bound to an
affiliate (lifetime commission). A click counts only inside the program's
cookie window, and only if it happened before the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Shops' clocks drift; an order stamped a little before the click is still that click's.
CLOCK_SKEW = timedelta(minutes=5)

METHODS = ("click", "coupon", "customer", "none")


@dataclass(frozen=True, slots=True)
class ClickEvidence:
    click_id: str
    affiliate_id: str
    clicked_at: datetime


@dataclass(frozen=True, slots=True)
class Attribution:
    affiliate_id: str | None
    method: str  # one of METHODS
    click_id: str | None = None


NONE = Attribution(affiliate_id=None, method="none")


def click_in_window(click: ClickEvidence, *, ordered_at: datetime, cookie_days: int) -> bool:
    age = ordered_at - click.clicked_at
    return -CLOCK_SKEW <= age <= timedelta(days=cookie_days)


def decide(
    *,
    click: ClickEvidence | None,
    coupon_affiliate_id: str | None,
    customer_affiliate_id: str | None,
    ordered_at: datetime,
    cookie_days: int,
) -> Attribution:
    if click is not None and click_in_window(click, ordered_at=ordered_at, cookie_days=cookie_days):
        return Attribution(affiliate_id=click.affiliate_id, method="click", click_id=click.click_id)
    if coupon_affiliate_id is not None:
        return Attribution(affiliate_id=coupon_affiliate_id, method="coupon")
    if customer_affiliate_id is not None:
        return Attribution(affiliate_id=customer_affiliate_id, method="customer")
    return NONE
