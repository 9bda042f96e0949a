"""Server-to-server postbacks: apps and networks report conversions and refunds
with a per-program token, by GET query string or POST (form or JSON).

The web edge validates and stores the postback as an InboundEvent, then
answers; this handler turns it into a conversion or refund in the worker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from partnerloop.core import money
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.errors import DomainError, InvalidInput
from partnerloop.orders import service as orders
from partnerloop.sync.models import InboundEvent
from partnerloop.sync.worker import RejectEvent

KIND = "postback"
EVENTS = ("conversion", "refund")

# Networks name the same things differently; the first name present wins.
_ALIASES = {
    "order_id": ("order_id", "transaction_id", "txid"),
    "click_id": ("click_id", "plclid", "clickid"),
    "coupon": ("coupon", "coupon_code"),
    "customer_id": ("customer_id",),
    "customer_email": ("customer_email", "email"),
    "amount": ("amount", "sale_amount", "payout_base"),
    "currency": ("currency",),
    "event": ("event",),
    "refund_id": ("refund_id",),
}


@dataclass(frozen=True)
class Postback:
    event: str
    order_id: str
    amount: str
    currency: str
    click_id: str | None = None
    coupon: str | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    refund_id: str | None = None

    @property
    def external_id(self) -> str:
        # The inbox dedupes on this: a network retrying the same postback is one event.
        if self.event == "refund":
            return f"refund:{self.refund_id}"
        return f"conversion:{self.order_id}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def parse(params: dict[str, str], *, program_currency: str) -> Postback:
    """Validate at the edge: a postback we could never process is refused with 4xx."""

    def pick(name: str) -> str | None:
        for alias in _ALIASES[name]:
            value = params.get(alias)
            if value is not None and value.strip() != "":
                return value.strip()
        return None

    event = pick("event") or "conversion"
    if event not in EVENTS:
        raise InvalidInput(
            "event must be 'conversion' or 'refund'.", code="invalid_event", field="event"
        )
    order_id = pick("order_id")
    if order_id is None:
        raise InvalidInput("order_id is required.", code="missing_field", field="order_id")
    amount = pick("amount")
    if amount is None:
        raise InvalidInput("amount is required.", code="missing_field", field="amount")
    currency = (pick("currency") or program_currency).upper()
    try:
        money.parse_amount(amount, currency)
    except money.MoneyError as error:
        raise InvalidInput(
            error.reason,
            code=error.code,
            field="currency" if error.code == "unknown_currency" else "amount",
        ) from None
    if currency != program_currency:
        raise InvalidInput(
            f"This program runs in {program_currency}; report amounts in {program_currency}.",
            code="currency_mismatch",
            field="currency",
        )
    refund_id = pick("refund_id")
    orders.check_references(
        order_id=order_id,
        click_id=pick("click_id"),
        coupon=pick("coupon"),
        customer_id=pick("customer_id"),
        customer_email=pick("customer_email"),
        refund_id=refund_id,
    )
    if event == "refund" and refund_id is None:
        raise InvalidInput(
            "A refund postback needs refund_id, so a retried postback is not counted twice.",
            code="missing_field",
            field="refund_id",
        )
    return Postback(
        event=event,
        order_id=order_id,
        amount=amount,
        currency=currency,
        click_id=pick("click_id"),
        coupon=pick("coupon"),
        customer_id=pick("customer_id"),
        customer_email=pick("customer_email"),
        refund_id=refund_id,
    )


def make_handler(cipher: FieldCipher):  # type: ignore[no-untyped-def]
    def handle(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        data = Postback(**json.loads(payload))
        program_id = event.program_id
        if program_id is None:
            raise RejectEvent("postback without a program")
        amount_minor = money.parse_amount(data.amount, data.currency)
        try:
            if data.event == "refund":
                orders.record_refund(
                    session,
                    cipher,
                    program_id=program_id,
                    order_id=data.order_id,
                    amount_minor=amount_minor,
                    currency=data.currency,
                    refund_id=data.refund_id,
                    now=now,
                )
                return
            orders.record_conversion(
                session,
                cipher,
                orders.OrderInput(
                    program_id=program_id,
                    order_id=data.order_id,
                    amount_minor=amount_minor,
                    currency=data.currency,
                    source=KIND,
                    click_id=data.click_id,
                    coupon_code=data.coupon,
                    customer_email=data.customer_email,
                    customer_external_id=data.customer_id,
                    ordered_at=event.received_at,
                ),
                now=now,
            )
        except DomainError as error:
            # Valid at the edge but not applicable (e.g. a refund larger than its
            # order): keep it, with the reason, for a human to look at and replay.
            raise RejectEvent(f"{error.code}: {error.detail}") from None

    return handle
