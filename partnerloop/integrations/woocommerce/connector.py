"""WooCommerce: webhooks signed with base64 HMAC-SHA256 of the raw body
(X-WC-Webhook-Signature), an unsigned form-encoded ping when a webhook is
saved, and REST v3 polling (`GET /wp-json/wc/v3/orders`) for backfill.

WooCommerce builds a webhook's payload when the delivery job runs, so every
order body is a snapshot of the order's current state (an order.created can
already be completed; several edits coalesce into one order.updated). Refunds
have no topic of their own: they arrive inside order.updated (`refunds[]`).
The inbox dedupe key is therefore the order's state, not the delivery id
(X-WC-Webhook-Delivery-ID names one HTTP attempt and repeats within a second).

Amounts are the order's decimal strings (`total`, `total_tax`, ...); ids are
integers. `date_*_gmt` are UTC without an offset.
Facts and sources: ../shared/fixtures/NOTES.md section 2.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from partnerloop.integrations.shop import (
    Answer,
    BadSignature,
    ConnectorConfig,
    Delivery,
    Ignored,
    PulledItem,
    PulledPage,
    ShopEvent,
    Unusable,
    as_text,
    body_hash,
    currency_of,
    get_with_retry,
    hmac_sha256,
    matches,
    minor,
    minor_or_zero,
    parse_json,
    parse_object,
    parse_time,
    require,
)
from partnerloop.integrations.woocommerce import writeback
from partnerloop.orders.snapshots import (
    Cancellation,
    CustomerFacts,
    OrderLine,
    OrderSnapshot,
    RefundFacts,
)
from partnerloop.sync.worker import Outcome

ORDER_TOPICS = ("order.created", "order.updated", "order.restored")
CUSTOMER_TOPICS = ("customer.created", "customer.updated")
# customer.deleted's body is just {"id": N}; the customer's orders stay as they are.
IGNORED_TOPICS = ("customer.deleted",)
# WooCommerce's core order statuses (wc_get_order_statuses without the wc- prefix,
# plus checkout-draft from the block checkout and trash for trashed orders).
STATUSES = {
    "pending": "pending",
    "on-hold": "pending",
    "checkout-draft": "pending",
    "processing": "paid",
    "completed": "paid",
    # Refunds come as refunds[] on the same body and reduce the commission there;
    # the order itself was paid.
    "refunded": "paid",
    # A failed payment is not final in WooCommerce: the customer can pay the same
    # order again (failed -> pending -> processing). Cancelled is final here (a
    # commission is never revived), so failed stays "not paid yet".
    "failed": "pending",
    "cancelled": "cancelled",
    "trash": "cancelled",
}
# Order meta keys carrying our click id (set by the storefront snippet).
CLICK_META_KEYS = ("plclid", "_plclid")
# WooCommerce Order Attribution: the first page of the visit (our tracking
# redirect appends ?plclid=... to it).
SESSION_ENTRY_META = "_wc_order_attribution_session_entry"
API_PATH = "/wp-json/wc/v3/orders"
PER_PAGE = 100
PING_BODY = re.compile(rb"webhook_id=[0-9]{1,20}")
FORM_TYPE = "application/x-www-form-urlencoded"

# wp_specialchars_decode($secret, ENT_QUOTES): WordPress stores the secret
# HTML-escaped, and WooCommerce decodes exactly these entities before signing.
_ENTITY_PADDING = (
    (re.compile(r"&#0*39;"), "&#039;"),
    (re.compile(r"&#x0*27;", re.IGNORECASE), "&#x27;"),
    (re.compile(r"&#0*34;"), "&#034;"),
    (re.compile(r"&#x0*22;", re.IGNORECASE), "&#x22;"),
    (re.compile(r"&#0*60;"), "&#060;"),
    (re.compile(r"&#0*62;"), "&#062;"),
    (re.compile(r"&#0*38;"), "&#038;"),
    (re.compile(r"&#x0*26;", re.IGNORECASE), "&#x26;"),
)
_ENTITIES = {
    "&#039;": "'",
    "&#x27;": "'",
    "&quot;": '"',
    "&#034;": '"',
    "&#x22;": '"',
    "&lt;": "<",
    "&#060;": "<",
    "&gt;": ">",
    "&#062;": ">",
    "&amp;": "&",
    "&#038;": "&",
    "&#x26;": "&",
}
_ENTITY = re.compile("|".join(re.escape(name) for name in _ENTITIES))


def specialchars_decode(text: str) -> str:
    """WordPress's wp_specialchars_decode(text, ENT_QUOTES): one pass like PHP's
    strtr, so "&amp;lt;" becomes "&lt;", not "<"."""
    if "&" not in text:
        return text
    for pattern, replacement in _ENTITY_PADDING:
        text = pattern.sub(replacement, text)
    return _ENTITY.sub(lambda found: _ENTITIES[found.group(0)], text)


def signature_of(secret: str, body: bytes) -> str:
    key = specialchars_decode(secret).encode()
    return base64.b64encode(hmac_sha256(key, body)).decode()


def _is_ping(request: Any) -> bool:
    """WooCommerce's deliver_ping: POST `webhook_id=<n>`, form-encoded, with no
    X-WC-Webhook-* header at all. Nothing else passes unsigned."""
    if request.method != "POST":
        return False
    if any(name.startswith("x-wc-webhook-") for name in request.headers):
        return False
    content_type = request.headers.get("content-type", FORM_TYPE).split(";")[0].strip().lower()
    return content_type == FORM_TYPE and PING_BODY.fullmatch(request.body.strip()) is not None


def state_key(resource: str, data: Mapping[str, Any]) -> str | None:
    """The dedupe key of a resource state: equal for a redelivery, a webhook and a
    pulled copy of the same state; different when anything we apply changes.
    The total is in it because date_modified_gmt has one-second resolution.
    None without a date_modified_gmt (a {"id": N} body of a *.deleted topic):
    the body's hash serves then."""
    resource_id = as_text(data.get("id"))
    modified = data.get("date_modified_gmt")
    if resource_id is None or not isinstance(modified, str) or not modified:
        return None
    if resource == "order":
        refunds = ",".join(
            str(as_text(refund.get("id")))
            for refund in data.get("refunds") or []
            if isinstance(refund, Mapping)
        )
        return (
            f"order:{resource_id}:{modified}:{data.get('status')}:{data.get('total')}"
            f":refunds={refunds}"
        )
    return f"{resource}:{resource_id}:{modified}"


class WooCommerceConnector:
    kind = "woocommerce"
    settings_fields: Mapping[str, bool] = {"store_url": True}
    credential_fields: Sequence[str] = ("consumer_key", "consumer_secret")

    def verify(
        self,
        request: Any,
        *,
        secrets: Sequence[str],
        config: ConnectorConfig,
        now: datetime,
    ) -> Delivery | Answer:
        given = request.headers.get("x-wc-webhook-signature")
        if not given:
            if _is_ping(request):
                # Without a 200 here the merchant cannot save the webhook.
                return Answer(200, "ok")
            raise BadSignature("missing X-WC-Webhook-Signature header")
        if not any(matches(signature_of(secret, request.body), given) for secret in secrets):
            raise BadSignature("the X-WC-Webhook-Signature signature does not match")
        topic = request.headers.get("x-wc-webhook-topic") or "unknown"
        resource = request.headers.get("x-wc-webhook-resource") or topic.split(".")[0]
        return Delivery(topic=topic[:64], event_id=_event_id(resource, request.body))

    def normalise(self, topic: str, payload: bytes, *, config: ConnectorConfig) -> list[ShopEvent]:
        data = parse_object(payload)
        if topic in ORDER_TOPICS:
            return [order_snapshot(data)]
        if topic in CUSTOMER_TOPICS:
            return [customer_facts(data)]
        if topic == "order.deleted":
            # Sent when an order is trashed or deleted, with only {"id": N}: its
            # commission is reversed. A later restore from the trash is not followed
            # (a cancelled order stays cancelled).
            order_id = as_text(require(data, "id", what="the deleted order"))
            assert order_id is not None
            return [Cancellation(order_id=order_id, reason="deleted or trashed in WooCommerce")]
        if topic in IGNORED_TOPICS:
            return [Ignored(f"{topic} carries only the id; nothing to apply")]
        raise Unusable(f"unknown topic {topic!r}")

    def pull(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        since: datetime,
        cursor: Mapping[str, Any] | None,
    ) -> Iterator[PulledPage]:
        """GET /wp-json/wc/v3/orders modified since `since`, oldest change first,
        page by page (X-WP-TotalPages); the cursor is the next page number."""
        base = str(config.settings.get("api_base_url") or config.settings["store_url"])
        key = config.credentials.get("consumer_key")
        secret = config.credentials.get("consumer_secret")
        if not key or not secret:
            raise Unusable(
                "a WooCommerce backfill needs credentials.consumer_key and consumer_secret"
            )
        # dates_are_gmt: without it modified_after is read in the site's time zone.
        after = since.astimezone(UTC).replace(tzinfo=None) if since.tzinfo else since
        page = int((cursor or {}).get("page") or 1)
        while True:
            query = urlencode(
                {
                    "modified_after": after.isoformat(timespec="seconds"),
                    "dates_are_gmt": "true",
                    "orderby": "modified",
                    "order": "asc",
                    "per_page": PER_PAGE,
                    "page": page,
                }
            )
            response = get_with_retry(
                client, f"{base}{API_PATH}?{query}", auth=httpx.BasicAuth(key, secret)
            )
            orders = parse_json(response.content)
            if not isinstance(orders, list):
                raise Unusable("the WooCommerce orders list is not a JSON array")
            pages = _int_header(response, "x-wp-totalpages")
            done = not orders or page >= pages if pages is not None else len(orders) < PER_PAGE
            yield PulledPage(
                items=[_pulled(order) for order in orders if isinstance(order, Mapping)],
                cursor={} if done else {"page": page + 1},
                total=_int_header(response, "x-wp-total"),
                done=done,
            )
            if done:
                return
            page += 1

    def write_customer(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        customer_id: str,
        values: Mapping[str, str | None],
        now: datetime,
    ) -> Outcome:
        """Write the customer's CRM values as `crm_*` meta (see woocommerce/writeback.py)."""
        base = config.settings.get("api_base_url") or config.settings.get("store_url")
        key = config.credentials.get("consumer_key")
        secret = config.credentials.get("consumer_secret")
        if not base or not key or not secret:
            return Outcome(
                ok=False,
                error="a WooCommerce write-back needs settings.store_url and "
                "credentials.consumer_key and consumer_secret",
            )
        return writeback.write_meta(
            client,
            # API_PATH is the orders collection; customers sit next to it under wc/v3.
            api=str(base).rstrip("/") + API_PATH.removesuffix("/orders"),
            auth=httpx.BasicAuth(key, secret),
            customer_id=customer_id,
            values=values,
        )


def _event_id(resource: str, body: bytes) -> str:
    try:
        data = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        data = None  # stored anyway; the worker rejects it with the reason
    try:
        key = state_key(resource, data) if isinstance(data, dict) else None
    except Unusable:
        key = None  # e.g. a fractional id: the worker says what is wrong
    return key or f"sha256:{body_hash(body)}"


def _pulled(order: Mapping[str, Any]) -> PulledItem:
    payload = json.dumps(order, default=str).encode()  # Decimals as exact strings
    try:
        key = state_key("order", order)
    except Unusable:
        key = None
    return PulledItem(
        topic="order.updated",
        event_id=key or f"sha256:{body_hash(payload)}",
        payload=payload,
    )


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def click_id_of(order: Mapping[str, Any]) -> str | None:
    """Our plclid from the order meta, else from the Order Attribution landing URL."""
    meta = {
        item.get("key"): item.get("value")
        for item in order.get("meta_data") or []
        if isinstance(item, Mapping)
    }
    for key in CLICK_META_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    entry = meta.get(SESSION_ENTRY_META)
    if isinstance(entry, str) and entry:
        values = parse_qs(urlsplit(entry).query).get("plclid")
        if values:
            return values[0]
    return None


def _unit_price(item: Mapping[str, Any], quantity: int, currency: str) -> int:
    """The line's price before discounts, exactly: subtotal / quantity when that
    divides; else WooCommerce's `price` (a float of total / quantity, after
    discounts) when it has no more decimals than the currency; else subtotal /
    quantity rounded half-even. Display only: commissions use the order totals."""
    subtotal = minor_or_zero(item.get("subtotal"), currency, what="a line's subtotal")
    if quantity > 0 and subtotal % quantity == 0:
        return subtotal // quantity
    try:
        return minor(item.get("price"), currency, what="a line's price")
    except Unusable:
        pass
    if quantity <= 0:
        return subtotal
    return int((Decimal(subtotal) / quantity).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _line(item: Mapping[str, Any], currency: str) -> OrderLine:
    quantity = item.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise Unusable(f"a line item's quantity is not a whole number: {quantity!r}")
    return OrderLine(
        quantity=quantity,
        unit_price_minor=_unit_price(item, quantity, currency),
        # WooCommerce's line total is after the line's discounts and without tax.
        total_minor=minor(item.get("total"), currency, what="a line item's total"),
        line_id=as_text(item.get("id")),
        sku=item.get("sku") or None,
        name=item.get("name") or None,
    )


def order_snapshot(order: Mapping[str, Any]) -> OrderSnapshot:
    order_id = as_text(require(order, "id", what="the order"))
    assert order_id is not None
    what = f"order {order_id}"
    currency = currency_of(order.get("currency"), what=what)
    total = minor(order.get("total"), currency, what=f"{what}'s total")
    # total_tax includes shipping tax (cart_tax + shipping_tax); fees stay in the base.
    tax = minor_or_zero(order.get("total_tax"), currency, what=f"{what}'s total_tax")
    shipping = minor_or_zero(order.get("shipping_total"), currency, what=f"{what}'s shipping_total")
    raw_status = order.get("status")
    status = STATUSES.get(str(raw_status).removeprefix("wc-"))
    if status is None:
        raise Unusable(f"{what} has an unknown status {raw_status!r}")
    ordered_at = parse_time(order.get("date_created_gmt"), what="date_created_gmt")
    if ordered_at is None:
        raise Unusable(f"{what} has no date_created_gmt")
    return OrderSnapshot(
        order_id=order_id,
        currency=currency,
        subtotal_minor=max(total - tax - shipping, 0),
        total_minor=total,
        tax_minor=tax,
        shipping_minor=shipping,
        discount_minor=minor_or_zero(
            order.get("discount_total"), currency, what=f"{what}'s discount_total"
        ),
        status=status,
        ordered_at=ordered_at,
        updated_at=parse_time(order.get("date_modified_gmt"), what="date_modified_gmt"),
        number=as_text(order.get("number")),
        lines=tuple(
            _line(item, currency)
            for item in order.get("line_items") or []
            if isinstance(item, Mapping)
        ),
        coupon_codes=tuple(
            str(line["code"])
            for line in order.get("coupon_lines") or []
            if isinstance(line, Mapping) and line.get("code")
        ),
        click_id=click_id_of(order),
        customer=_order_customer(order),
        refunds=tuple(
            refund_facts(refund, order_id=order_id, currency=currency)
            for refund in order.get("refunds") or []
            if isinstance(refund, Mapping)
        ),
    )


def _order_customer(order: Mapping[str, Any]) -> CustomerFacts | None:
    billing = order.get("billing") if isinstance(order.get("billing"), Mapping) else {}
    customer_id = order.get("customer_id")
    # customer_id 0 is a guest checkout: no account to key on, the email only.
    external_id = None if customer_id in (0, "0", None, "") else as_text(customer_id)
    email = (billing or {}).get("email")
    email = email if isinstance(email, str) and email else None
    if external_id is None and email is None:
        return None
    return CustomerFacts(external_id=external_id, email=email, name=_name(billing or {}))


def refund_facts(refund: Mapping[str, Any], *, order_id: str, currency: str) -> RefundFacts:
    """An entry of the order's refunds[]: {id, reason, total: "-10.00"}. The order
    body has no split into lines, shipping and tax, so the whole refund counts
    (apply caps it at what is left of the commission base)."""
    refund_id = as_text(require(refund, "id", what="a refund"))
    assert refund_id is not None
    amount = minor(refund.get("total"), currency, what=f"refund {refund_id}'s total")
    return RefundFacts(
        refund_id=refund_id, order_id=order_id, amount_minor=abs(amount), currency=currency
    )


def _name(person: Mapping[str, Any]) -> str | None:
    parts = [person.get("first_name"), person.get("last_name")]
    name = " ".join(part.strip() for part in parts if isinstance(part, str) and part.strip())
    return name or None


def customer_facts(customer: Mapping[str, Any]) -> CustomerFacts:
    external_id = as_text(require(customer, "id", what="the customer"))
    billing = customer.get("billing") if isinstance(customer.get("billing"), Mapping) else {}
    email = customer.get("email") or (billing or {}).get("email")
    return CustomerFacts(
        external_id=external_id,
        email=email if isinstance(email, str) and email else None,
        name=_name(customer) or _name(billing or {}),
        updated_at=parse_time(customer.get("date_modified_gmt"), what="date_modified_gmt"),
    )


CONNECTOR = WooCommerceConnector()
