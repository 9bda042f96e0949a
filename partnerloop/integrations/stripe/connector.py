"""Stripe: v1 snapshot events (Stripe-Signature: HMAC-SHA256 over "{t}.{body}" with
the whole whsec_ secret, 5 minutes tolerance), dedupe on the event id.

Amounts are integers in Stripe's minor units already; Stripe's unit differs from
ISO 4217 only for ISK (two decimals at Stripe, none in ISO) and MGA (the other
way round), converted exactly below.

Order ids, chosen so that every event about one purchase lands on one order:
- Checkout in payment mode: the PaymentIntent id (`pi_...`), which is what
  `charge.refunded` carries (`charge.payment_intent`);
- Checkout in subscription mode: the first invoice's id (`session.invoice`),
  because `invoice.paid` fires for that invoice too and must not count twice;
- `invoice.paid` of a subscription invoice: the invoice id (renewals are
  orders of their own); an invoice without a subscription is not counted
  (Checkout's `invoice_creation` invoices are already counted by their session);
- `charge.refunded`: `charge.invoice` (API versions before 2025-03-31 name it)
  else `charge.payment_intent`, else the charge id.
Facts and sources: ../shared/fixtures/NOTES.md section 4.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from partnerloop.core.ids import has_kind
from partnerloop.integrations.shop import (
    Answer,
    BadSignature,
    ConnectorConfig,
    Delivery,
    Ignored,
    PulledItem,
    PulledPage,
    ShopEvent,
    SubscriptionEnded,
    Unusable,
    as_text,
    body_hash,
    currency_of,
    get_with_retry,
    hmac_sha256,
    matches,
    parse_object,
)
from partnerloop.orders.snapshots import CustomerFacts, OrderLine, OrderSnapshot, RefundFacts

DEFAULT_API_BASE = "https://api.stripe.com"
TOLERANCE_SECONDS = 300  # stripe-python's DEFAULT_TOLERANCE (past side only)
THIN_EVENT = "v2.core.event"
CHECKOUT_TOPICS = {
    "checkout.session.completed": None,  # status from payment_status
    "checkout.session.async_payment_succeeded": "paid",
    "checkout.session.async_payment_failed": "cancelled",
}
CUSTOMER_TOPICS = ("customer.created", "customer.updated")
PULLED_TYPES = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "invoice.paid",
    "charge.refunded",
    "customer.subscription.deleted",
)
PAID_PAYMENT_STATUSES = ("paid", "no_payment_required")
# Refunds that have given (or are giving) money back; failed/canceled ones have not.
COUNTED_REFUND_STATUSES = ("succeeded", "pending", "requires_action", None)
CLICK_METADATA = ("plclid", "partnerloop_click_id")
# Stripe's minor unit where it is not ISO 4217's: exponent at Stripe - ISO exponent.
STRIPE_EXPONENT_SHIFT = {"ISK": 2, "MGA": -2}


def signature_of(secret: str, timestamp: str, body: bytes) -> str:
    return hmac_sha256(secret.encode(), f"{timestamp}.".encode() + body).hex()


def parse_signature_header(value: str) -> tuple[int, list[str]]:
    """`t=<unix>,v1=<hex>[,v1=...][,v0=...]` -> (t, the v1 signatures)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and item.isdigit():
            timestamp = int(item)
        elif key == "v1" and item:
            signatures.append(item)
    if timestamp is None or not signatures:
        raise BadSignature("malformed Stripe-Signature header (needs t= and v1=)")
    return timestamp, signatures


class StripeConnector:
    kind = "stripe"
    settings_fields: Mapping[str, bool] = {}
    credential_fields: Sequence[str] = ("api_key",)

    def verify(
        self,
        request: Any,
        *,
        secrets: Sequence[str],
        config: ConnectorConfig,
        now: datetime,
    ) -> Delivery | Answer:
        header = request.headers.get("stripe-signature")
        if not header:
            raise BadSignature("missing Stripe-Signature header")
        timestamp, given = parse_signature_header(header)
        expected = [signature_of(secret, str(timestamp), request.body) for secret in secrets]
        # Every pair is compared (no early exit on the first match): constant time per pair.
        if not any([matches(e, g) for e in expected for g in given]):
            raise BadSignature("the Stripe-Signature does not match")
        if timestamp < now.timestamp() - TOLERANCE_SECONDS:
            raise BadSignature(
                f"the Stripe-Signature timestamp {timestamp} is more than "
                f"{TOLERANCE_SECONDS} s old (a replayed request?)"
            )
        try:
            event = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            # Signed but not an event: stored, and the worker quarantines it.
            return Delivery(topic="unknown", event_id=f"sha256:{body_hash(request.body)}")
        topic = event.get("type")
        # Thin (v2) events are stored too and rejected by normalise with the reason:
        # the signature is Stripe's, refusing it with a 401 would only make Stripe retry.
        return Delivery(
            topic=(topic if isinstance(topic, str) and topic else "unknown")[:64],
            event_id=event["id"],
        )

    def normalise(self, topic: str, payload: bytes, *, config: ConnectorConfig) -> list[ShopEvent]:
        event = parse_object(payload)
        if event.get("object") == THIN_EVENT:
            raise Unusable(
                f"a thin event ({THIN_EVENT}) carries no snapshot of the object; point a "
                "v1 (snapshot) webhook endpoint at partnerloop"
            )
        data = event.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        if not isinstance(obj, Mapping):
            raise Unusable("not a Stripe event: it has no data.object")
        occurred = _time(event.get("created"))
        if topic in CHECKOUT_TOPICS:
            return checkout_events(obj, status=CHECKOUT_TOPICS[topic], occurred=occurred)
        if topic == "invoice.paid":
            return [invoice_event(obj, occurred=occurred)]
        if topic == "charge.refunded":
            previous = data.get("previous_attributes") if isinstance(data, Mapping) else None
            return list(refund_facts(obj, previous=previous or {}))
        if topic == "customer.subscription.deleted":
            return [subscription_ended(obj, occurred=occurred)]
        if topic in CUSTOMER_TOPICS:
            return [customer_facts(obj, occurred=occurred)]
        raise Unusable(f"unknown topic {topic!r}")

    def pull(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        since: datetime,
        cursor: Mapping[str, Any] | None,
    ) -> Iterator[PulledPage]:
        """GET /v1/events (newest first, the last 30 days only), following
        `starting_after`; each event is stored under its id like a webhook."""
        base = str(config.settings.get("api_base_url") or DEFAULT_API_BASE).rstrip("/")
        api_key = config.credentials.get("api_key")
        if not api_key:
            raise Unusable("a Stripe backfill needs credentials.api_key")
        headers = {"Authorization": f"Bearer {api_key}"}
        query: list[tuple[str, str]] = [("types[]", name) for name in PULLED_TYPES]
        query += [("created[gte]", str(int(since.timestamp()))), ("limit", "100")]
        starting_after = (cursor or {}).get("starting_after")
        while True:
            params = query + ([("starting_after", starting_after)] if starting_after else [])
            response = get_with_retry(
                client, f"{base}/v1/events?{urlencode(params)}", headers=headers
            )
            page = parse_object(response.content)
            events = [e for e in page.get("data") or [] if isinstance(e, Mapping)]
            items = [
                PulledItem(
                    topic=str(e.get("type") or "unknown")[:64],
                    event_id=str(e["id"]),
                    payload=_dump(e),
                )
                for e in events
                if e.get("id")
            ]
            more = bool(page.get("has_more")) and bool(items)
            if items:
                starting_after = items[-1].event_id
            yield PulledPage(
                items=items,
                cursor={"starting_after": starting_after} if more else {},
                done=not more,
            )
            if not more:
                return


def _dump(value: Any) -> bytes:
    # Stripe sends no JSON floats in amounts; anything parsed as Decimal stays exact as text.
    return json.dumps(value, default=str).encode()


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int):
        raise Unusable(f"a Stripe timestamp is not unix seconds: {value!r}")
    return datetime.fromtimestamp(value, tz=UTC)


def _id(value: Any) -> str | None:
    """An id or an expanded object's id."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return as_text(value) if isinstance(value, str) else None


def stripe_minor(value: Any, currency: str, *, what: str) -> int:
    """A Stripe integer amount -> minor units of `currency` as ISO 4217 counts them."""
    if value is None:
        raise Unusable(f"{what} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unusable(f"{what} is not an integer amount: {value!r}")
    shift = STRIPE_EXPONENT_SHIFT.get(currency, 0)
    if shift > 0:
        whole, rest = divmod(value, 10**shift)
        if rest:
            raise Unusable(f"{what} {value} is a fraction of a {currency} unit")
        return int(whole)
    return int(value * 10 ** (-shift))


def _minor_or_zero(value: Any, currency: str, *, what: str) -> int:
    return 0 if value is None else stripe_minor(value, currency, what=what)


def _metadata(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def click_id_of(*candidates: Any) -> str | None:
    """The first candidate that is one of our click ids, else the first non-empty one
    (snapshots.clean_click_id drops it then: a merchant's own reference never rejects)."""
    texts = [c.strip() for c in candidates if isinstance(c, str) and c.strip()]
    for text in texts:
        if has_kind(text, "click"):
            return text
    return texts[0] if texts else None


def _metadata_click(metadata: Any) -> str | None:
    meta = _metadata(metadata)
    return click_id_of(*(meta.get(key) for key in CLICK_METADATA))


def _customer(customer_id: str | None, email: Any, name: Any) -> CustomerFacts | None:
    email = email if isinstance(email, str) and email else None
    name = name if isinstance(name, str) and name.strip() else None
    if customer_id is None and email is None:
        return None
    return CustomerFacts(external_id=customer_id, email=email, name=name)


def checkout_order_id(session: Mapping[str, Any]) -> str:
    """Subscription mode: the first invoice (invoice.paid names it too); payment
    mode: the PaymentIntent (charge.refunded names it); else the session itself."""
    candidates = [session.get("payment_intent"), session.get("id")]
    if session.get("mode") == "subscription":
        candidates.insert(0, session.get("invoice"))
    for candidate in candidates:
        found = _id(candidate)
        if found:
            return found
    raise Unusable("the checkout session has no id")


def checkout_events(
    session: Mapping[str, Any], *, status: str | None, occurred: datetime | None
) -> list[ShopEvent]:
    session_id = _id(session.get("id")) or "?"
    if session.get("mode") == "setup":
        return [Ignored(f"checkout session {session_id} only saves a payment method")]
    order_id = checkout_order_id(session)
    what = f"checkout session {session_id}"
    if session.get("amount_total") is None:
        raise Unusable(f"{what} has no amount_total")
    currency = currency_of(session.get("currency"), what=what)
    total = stripe_minor(session.get("amount_total"), currency, what=f"{what}'s amount_total")
    details = _metadata(session.get("total_details"))
    tax = _minor_or_zero(details.get("amount_tax"), currency, what="amount_tax")
    shipping = _minor_or_zero(details.get("amount_shipping"), currency, what="amount_shipping")
    discount = _minor_or_zero(details.get("amount_discount"), currency, what="amount_discount")
    if status is None:
        status = "paid" if session.get("payment_status") in PAID_PAYMENT_STATUSES else "pending"
    ordered_at = _time(session.get("created")) or occurred
    if ordered_at is None:
        raise Unusable(f"{what} has no created")
    details_of_customer = _metadata(session.get("customer_details"))
    return [
        OrderSnapshot(
            order_id=order_id,
            currency=currency,
            # The commission base: without tax and shipping (total is after discounts).
            subtotal_minor=max(total - tax - shipping, 0),
            total_minor=total,
            tax_minor=tax,
            shipping_minor=shipping,
            discount_minor=discount,
            status=status,
            ordered_at=ordered_at,
            # In subscription mode the order is shared with its first invoice's
            # invoice.paid, another object: comparing the two events' times would drop
            # the session (and its click id) when it is the older one. Its amounts
            # equal the invoice's and its status only moves forward, so it is never stale.
            updated_at=None if session.get("mode") == "subscription" else occurred,
            lines=tuple(
                _checkout_line(item, currency)
                for item in (_metadata(session.get("line_items")).get("data") or [])
                if isinstance(item, Mapping)
            ),
            click_id=click_id_of(
                session.get("client_reference_id"), _metadata_click(session.get("metadata"))
            ),
            customer=_customer(
                _id(session.get("customer")),
                details_of_customer.get("email") or session.get("customer_email"),
                details_of_customer.get("name"),
            ),
            subscription_id=_id(session.get("subscription")),
        )
    ]


def _checkout_line(item: Mapping[str, Any], currency: str) -> OrderLine:
    """A line of an expanded `line_items` (webhooks carry them only if re-fetched)."""
    quantity = int(item.get("quantity") or 0)
    price = _metadata(item.get("price"))
    subtotal = _minor_or_zero(item.get("amount_subtotal"), currency, what="a line's subtotal")
    unit = price.get("unit_amount")
    return OrderLine(
        quantity=quantity,
        unit_price_minor=stripe_minor(unit, currency, what="a line's unit_amount")
        if isinstance(unit, int)
        else subtotal // max(quantity, 1),
        total_minor=subtotal
        - _minor_or_zero(item.get("amount_discount"), currency, what="a line's discount"),
        line_id=_id(item.get("id")),
        sku=_id(price.get("id")),
        name=item.get("description") if isinstance(item.get("description"), str) else None,
    )


def subscription_of_invoice(invoice: Mapping[str, Any]) -> str | None:
    """`invoice.subscription` (before 2025-03-31) or `parent.subscription_details.subscription`."""
    found = _id(invoice.get("subscription"))
    if found:
        return found
    details = _metadata(_metadata(invoice.get("parent")).get("subscription_details"))
    return _id(details.get("subscription"))


def _invoice_tax(invoice: Mapping[str, Any], total: int, currency: str) -> int:
    excluding = invoice.get("total_excluding_tax")
    if isinstance(excluding, int) and not isinstance(excluding, bool):
        # Inclusive and exclusive taxes alike: what the total holds beyond the tax-free amount.
        return total - stripe_minor(excluding, currency, what="total_excluding_tax")
    taxes = invoice.get("total_taxes")
    if isinstance(taxes, list):
        return sum(
            stripe_minor(t.get("amount"), currency, what="a tax amount")
            for t in taxes
            if isinstance(t, Mapping)
        )
    return _minor_or_zero(invoice.get("tax"), currency, what="the invoice's tax")


def invoice_event(invoice: Mapping[str, Any], *, occurred: datetime | None) -> ShopEvent:
    invoice_id = _id(invoice.get("id"))
    if invoice_id is None:
        raise Unusable("the invoice has no id")
    subscription_id = subscription_of_invoice(invoice)
    if subscription_id is None:
        return Ignored(
            f"invoice {invoice_id} belongs to no subscription: one-off payments are "
            "counted through their checkout session"
        )
    what = f"invoice {invoice_id}"
    if invoice.get("total") is None:
        raise Unusable(f"{what} has no total")
    currency = currency_of(invoice.get("currency"), what=what)
    total = stripe_minor(invoice.get("total"), currency, what=f"{what}'s total")
    tax = _invoice_tax(invoice, total, currency)
    shipping = _minor_or_zero(invoice.get("amount_shipping"), currency, what="amount_shipping")
    discount = sum(
        stripe_minor(d.get("amount"), currency, what="a discount amount")
        for d in invoice.get("total_discount_amounts") or []
        if isinstance(d, Mapping)
    )
    transitions = _metadata(invoice.get("status_transitions"))
    ordered_at = _time(transitions.get("paid_at")) or _time(invoice.get("created")) or occurred
    if ordered_at is None:
        raise Unusable(f"{what} has no created")
    parent_details = _metadata(_metadata(invoice.get("parent")).get("subscription_details"))
    legacy_details = _metadata(invoice.get("subscription_details"))
    return OrderSnapshot(
        order_id=invoice_id,
        currency=currency,
        subtotal_minor=max(total - tax - shipping, 0),
        total_minor=total,
        tax_minor=tax,
        shipping_minor=shipping,
        discount_minor=discount,
        status="paid",  # the topic says so; the object may predate the payment
        ordered_at=ordered_at,
        updated_at=occurred,
        number=as_text(invoice.get("number")) if isinstance(invoice.get("number"), str) else None,
        lines=tuple(
            _invoice_line(line, currency)
            for line in (_metadata(invoice.get("lines")).get("data") or [])
            if isinstance(line, Mapping)
        ),
        click_id=click_id_of(
            _metadata_click(invoice.get("metadata")),
            _metadata_click(parent_details.get("metadata")),
            _metadata_click(legacy_details.get("metadata")),
        ),
        customer=_customer(
            _id(invoice.get("customer")),
            invoice.get("customer_email"),
            invoice.get("customer_name"),
        ),
        subscription_id=subscription_id,
        is_renewal=invoice.get("billing_reason") == "subscription_cycle",
    )


def _invoice_line(line: Mapping[str, Any], currency: str) -> OrderLine:
    quantity = int(line.get("quantity") or 0)
    amount = stripe_minor(line.get("amount"), currency, what="an invoice line's amount")
    unit = _metadata(line.get("price")).get("unit_amount")  # before 2025-03-31
    discounts = sum(
        stripe_minor(d.get("amount"), currency, what="a line discount")
        for d in line.get("discount_amounts") or []
        if isinstance(d, Mapping)
    )
    return OrderLine(
        quantity=quantity,
        unit_price_minor=stripe_minor(unit, currency, what="a line's unit_amount")
        if isinstance(unit, int) and not isinstance(unit, bool)
        else amount // max(quantity, 1),
        total_minor=amount - discounts,
        line_id=_id(line.get("id")),
        name=line.get("description") if isinstance(line.get("description"), str) else None,
    )


def refund_order_id(charge: Mapping[str, Any]) -> str:
    for candidate in (charge.get("invoice"), charge.get("payment_intent"), charge.get("id")):
        found = _id(candidate)
        if found:
            return found
    raise Unusable("the charge has no id")


def refund_facts(
    charge: Mapping[str, Any], *, previous: Mapping[str, Any]
) -> Iterator[RefundFacts]:
    """One fact per refund object when the charge lists them (deduped by re_ id);
    else the refunded amount this event added, keyed by the charge's running total."""
    charge_id = _id(charge.get("id"))
    if charge_id is None:
        raise Unusable("the charge has no id")
    order_id = refund_order_id(charge)
    currency = currency_of(charge.get("currency"), what=f"charge {charge_id}")
    listed = _metadata(charge.get("refunds")).get("data")
    refunds = [r for r in listed or [] if isinstance(r, Mapping)]
    if refunds:
        for refund in refunds:
            refund_id = _id(refund.get("id"))
            if refund_id is None or refund.get("status") not in COUNTED_REFUND_STATUSES:
                continue
            yield RefundFacts(
                refund_id=refund_id,
                order_id=order_id,
                amount_minor=stripe_minor(
                    refund.get("amount"), currency, what=f"refund {refund_id}'s amount"
                ),
                currency=currency,
                refunded_at=_time(refund.get("created")),
            )
        return
    if charge.get("amount_refunded") is None:
        raise Unusable(f"charge {charge_id} has no amount_refunded")
    refunded = stripe_minor(charge.get("amount_refunded"), currency, what="amount_refunded")
    before = _minor_or_zero(previous.get("amount_refunded"), currency, what="previous amount")
    yield RefundFacts(
        refund_id=f"{charge_id}:{charge.get('amount_refunded')}",
        order_id=order_id,
        amount_minor=max(refunded - before, 0),
        currency=currency,
    )


def subscription_ended(subscription: Mapping[str, Any], *, occurred: datetime | None) -> ShopEvent:
    subscription_id = _id(subscription.get("id"))
    if subscription_id is None:
        raise Unusable("the subscription has no id")
    ended_at = (
        _time(subscription.get("ended_at")) or _time(subscription.get("canceled_at")) or occurred
    )
    if ended_at is None:
        raise Unusable(f"subscription {subscription_id} has no ended_at")
    return SubscriptionEnded(subscription_id=subscription_id, ended_at=ended_at)


def customer_facts(customer: Mapping[str, Any], *, occurred: datetime | None) -> CustomerFacts:
    customer_id = _id(customer.get("id"))
    if customer_id is None:
        raise Unusable("the customer has no id")
    email = customer.get("email")
    name = customer.get("name")
    return CustomerFacts(
        external_id=customer_id,
        email=email if isinstance(email, str) and email else None,
        name=name if isinstance(name, str) and name.strip() else None,
        updated_at=occurred,
    )


CONNECTOR = StripeConnector()
