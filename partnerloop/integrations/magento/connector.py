"""Magento 2 / Adobe Commerce: Adobe I/O Events for Commerce (asynchronous,
CloudEvents 1.0 envelopes) as the webhook path, the REST API for backfill.

Magento Open Source has no outbound webhooks: a shop sends events through the
Adobe I/O Events for Commerce module to this connector's webhook URL, or is
caught up by `pull` (GET /rest/V1/orders with searchCriteria).

Envelope (../shared/fixtures/magento2/io-events_cloudevent_*.json):
`type` = "com.adobe.commerce.observer.<event>", `event_id` (the dedupe key,
repeated on every retry), `recipient_client_id`, `data.value` = the entity as
Magento's model data (snake_case, the same names as the REST order).

Signatures: `x-adobe-signature` = base64(HMAC-SHA256(client secret, raw body))
(the connector's secret is the I/O project's client secret), or, when
settings.public_key holds Adobe's public key (PEM), `x-adobe-digital-signature-1`
or `-2` = an RSA-SHA256 (PKCS#1 v1.5) signature of the raw body. Registration
sends GET ?challenge=X, answered {"challenge": X} without storing anything.

Ids: an order is keyed by its `entity_id` (internal, stable), not by
`increment_id` (the customer-facing number, kept as `number`), because credit
memos name their order by `order_id` = the order's entity_id.

Amounts: Magento keeps decimal(12,4) values (36.3899, "36.389900" in event
payloads). This connector is the one place where partnerloop rounds input: each
amount we keep is computed exactly in Decimal, then scaled to the currency's
minor units and rounded once with partnerloop.core.money.round_minor (half-even).
Discounts are subtracted as magnitudes: Magento stores an order's and a credit
memo's discount_amount as negative numbers and an item's as positive; we never
depend on that sign.

Facts and sources: ../shared/fixtures/NOTES.md section 3.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from partnerloop.core import money
from partnerloop.integrations.magento import writeback
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
    parse_object,
    parse_time,
    require,
)
from partnerloop.orders.snapshots import CustomerFacts, OrderLine, OrderSnapshot, RefundFacts
from partnerloop.sync.worker import Outcome

TYPE_PREFIX = "com.adobe.commerce."
ORDER_TOPICS = (
    "observer.sales_order_save_after",
    "observer.sales_order_save_commit_after",
    "observer.sales_order_place_after",
)
PULLED_ORDER_TOPIC = "rest.order"
CREDITMEMO_TOPICS = (
    "observer.sales_order_creditmemo_save_after",
    "observer.sales_order_creditmemo_save_commit_after",
)
CUSTOMER_TOPICS = ("observer.customer_save_after", "observer.customer_save_commit_after")
# Magento's order *state* (the fixed machine; `status` is merchant-configurable).
PENDING_STATES = ("new", "pending_payment", "payment_review", "holded")
PAID_STATES = ("processing", "complete", "closed")  # closed = refunded by credit memos
CANCELLED_STATES = ("canceled",)
# Credit memo states (Magento\Sales\Model\Order\Creditmemo): 1 open, 2 refunded, 3 canceled.
CREDITMEMO_OPEN = "1"
CREDITMEMO_CANCELED = "3"
# Where a storefront module may put our click id on the order.
CLICK_ATTRIBUTES = ("plclid", "partnerloop_click_id")
PAGE_SIZE = 100
MAGENTO_TIME = "%Y-%m-%d %H:%M:%S"  # Magento's UTC database format


def signature_of(secret: str, body: bytes) -> str:
    """Adobe I/O Events' x-adobe-signature: base64 HMAC-SHA256 with the client secret."""
    return base64.b64encode(hmac_sha256(secret.encode(), body)).decode()


def _rsa_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise BadSignature("settings.public_key is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadSignature("settings.public_key is not an RSA public key")
    return key


def _rsa_valid(key: rsa.RSAPublicKey, signature: str, body: bytes) -> bool:
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _envelope(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class MagentoConnector:
    kind = "magento"
    settings_fields: Mapping[str, bool] = {
        "base_url": True,  # https://shop.example.com (the REST API is under /rest/V1)
        "client_id": False,  # the I/O project's client id: envelopes for others are refused
        "public_key": False,  # PEM of Adobe's event-signing key (digital signatures)
    }
    credential_fields: Sequence[str] = ("access_token",)

    def verify(
        self,
        request: Any,
        *,
        secrets: Sequence[str],
        config: ConnectorConfig,
        now: datetime,
    ) -> Delivery | Answer:
        if request.method.upper() == "GET":
            challenge = request.query.get("challenge")
            if not challenge:
                return Answer(400, "a GET to this webhook must carry ?challenge=", "text/plain")
            return Answer(200, json.dumps({"challenge": challenge}), "application/json")
        body: bytes = request.body
        headers: Mapping[str, str] = request.headers
        if not self._signed(headers, body, secrets=secrets, config=config):
            raise BadSignature(
                "neither x-adobe-signature nor x-adobe-digital-signature-1/-2 matches"
            )
        envelope = _envelope(body)
        if envelope is None:
            # Signed but not a JSON object: stored, then quarantined by the worker.
            return Delivery(topic="unknown", event_id=f"sha256:{body_hash(body)}")
        expected = str(config.settings.get("client_id") or "")
        recipient = envelope.get("recipient_client_id") or envelope.get("recipientclientid")
        if expected and recipient != expected:
            raise BadSignature(f"an event for client {recipient!r}; this connector is {expected}")
        kind = envelope.get("type")
        topic = kind.removeprefix(TYPE_PREFIX) if isinstance(kind, str) and kind else "unknown"
        event_id = next(
            (
                str(envelope[key])
                for key in ("event_id", "eventid", "id")
                if envelope.get(key) not in (None, "")
            ),
            f"sha256:{body_hash(body)}",
        )
        return Delivery(topic=topic[:64], event_id=event_id)

    def _signed(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secrets: Sequence[str],
        config: ConnectorConfig,
    ) -> bool:
        given = headers.get("x-adobe-signature")
        if given and any(matches(signature_of(secret, body), given) for secret in secrets):
            return True
        pem = config.settings.get("public_key")
        digital = [
            value
            for value in (
                headers.get("x-adobe-digital-signature-1"),
                headers.get("x-adobe-digital-signature-2"),
            )
            if value
        ]
        if pem and digital:
            key = _rsa_key(str(pem))
            return any(_rsa_valid(key, signature, body) for signature in digital)
        return False

    def normalise(self, topic: str, payload: bytes, *, config: ConnectorConfig) -> list[ShopEvent]:
        data = parse_object(payload)
        if topic == PULLED_ORDER_TOPIC:
            return [order_snapshot(data)]
        if topic in ORDER_TOPICS:
            return [order_snapshot(_value(data))]
        if topic in CREDITMEMO_TOPICS:
            return [creditmemo_facts(_value(data))]
        if topic in CUSTOMER_TOPICS:
            return [customer_facts(_value(data))]
        raise Unusable(f"unknown topic {topic!r}")

    def pull(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        since: datetime,
        cursor: Mapping[str, Any] | None,
    ) -> Iterator[PulledPage]:
        """GET /rest/V1/orders updated at or after `since`, oldest first (entity_id
        breaks ties), PAGE_SIZE a page; the cursor is the next page number.

        Magento answers a currentPage past the end with the last page again, so
        the end is found from total_count, never from an empty page alone.
        Offset paging on a live shop can shift when an order is updated during
        the run; such an order comes back at the end (newer updated_at) and the
        next catch-up pull from `high_water_mark` covers it again.
        """
        base = str(config.settings.get("api_base_url") or config.settings["base_url"]).rstrip("/")
        token = config.credentials.get("access_token")
        if not token:
            raise Unusable("a Magento backfill needs credentials.access_token")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        page = int((cursor or {}).get("page") or 1)
        while True:
            response = get_with_retry(
                client,
                f"{base}/rest/V1/orders",
                headers=headers,
                params=search_criteria(since, page=page, page_size=PAGE_SIZE),
            )
            data = parse_object(response.content)
            orders = [order for order in data.get("items") or [] if isinstance(order, Mapping)]
            total = data.get("total_count")
            total = total if isinstance(total, int) and not isinstance(total, bool) else None
            done = not orders or total is None or page * PAGE_SIZE >= total
            yield PulledPage(
                items=[pulled_item(order) for order in orders],
                cursor={} if done else {"page": page + 1},
                total=total,
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
        """Write the customer's CRM values as `crm_*` attributes (see magento/writeback.py)."""
        base = config.settings.get("api_base_url") or config.settings.get("base_url")
        token = config.credentials.get("access_token")
        if not base or not token:
            return Outcome(
                ok=False,
                error="a Magento write-back needs settings.base_url and credentials.access_token",
            )
        return writeback.write_attributes(
            client,
            api=f"{str(base).rstrip('/')}/rest/V1",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            customer_id=customer_id,
            values=values,
        )


def search_criteria(since: datetime, *, page: int, page_size: int) -> dict[str, str]:
    """Magento's bracketed searchCriteria query parameters."""
    prefix = "searchCriteria"
    where = f"{prefix}[filter_groups][0][filters][0]"
    return {
        f"{where}[field]": "updated_at",
        f"{where}[value]": magento_time(since),
        f"{where}[condition_type]": "gteq",
        f"{prefix}[sortOrders][0][field]": "updated_at",
        f"{prefix}[sortOrders][0][direction]": "ASC",
        f"{prefix}[sortOrders][1][field]": "entity_id",
        f"{prefix}[sortOrders][1][direction]": "ASC",
        f"{prefix}[pageSize]": str(page_size),
        f"{prefix}[currentPage]": str(page),
    }


def magento_time(value: datetime) -> str:
    """An aware datetime as Magento stores times: UTC, "YYYY-MM-DD HH:MM:SS"."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(MAGENTO_TIME)


def pulled_item(order: Mapping[str, Any]) -> PulledItem:
    return PulledItem(
        topic=PULLED_ORDER_TOPIC,
        event_id=f"pull:order:{order.get('entity_id')}:{order.get('updated_at')}",
        payload=json.dumps(order, default=str).encode(),
    )


def high_water_mark(pages: Iterable[PulledPage]) -> datetime | None:
    """The newest updated_at among pulled orders: the `since` of the next scheduled
    catch-up pull. Magento's times have whole seconds and the filter is gteq, so
    orders at exactly that second come again; the inbox drops them (same event id
    = entity_id + updated_at)."""
    newest: datetime | None = None
    for page in pages:
        for item in page.items:
            try:
                order = json.loads(item.payload)
                when = parse_time(order.get("updated_at"), what="updated_at")
            except (ValueError, AttributeError, Unusable):
                continue
            if when is not None and (newest is None or when > newest):
                newest = when
    return newest


# --- payloads -> internal shapes ---------------------------------------------------------


def _value(envelope: Mapping[str, Any]) -> Mapping[str, Any]:
    data = envelope.get("data")
    value = data.get("value") if isinstance(data, Mapping) else None
    if not isinstance(value, Mapping):
        raise Unusable("the event has no data.value object")
    return value


def _decimal(value: Any, *, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal | float):
        raise Unusable(f"{what} is not an amount: {value!r}")
    try:
        exact = Decimal(str(value).strip())
    except InvalidOperation:
        raise Unusable(f"{what} is not an amount: {value!r}") from None
    if not exact.is_finite():
        raise Unusable(f"{what} is not an amount: {value!r}")
    return exact


def _exact(data: Mapping[str, Any], key: str, *, what: str, required: bool = False) -> Decimal:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise Unusable(f"{what} has no {key}")
        return Decimal(0)
    return _decimal(value, what=f"{what}'s {key}")


def to_minor(amount: Decimal, currency: str) -> int:
    """THE input rounding: an exact Magento decimal -> minor units, half-even, once."""
    return money.round_minor(amount.scaleb(money.exponent(currency)))


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true")


def _status(order: Mapping[str, Any], order_id: str) -> str:
    state = order.get("state")
    if state in PENDING_STATES:
        return "pending"
    if state in PAID_STATES:
        return "paid"
    if state in CANCELLED_STATES:
        return "cancelled"
    raise Unusable(f"order {order_id} has an unknown state {state!r}")


def click_id_of(order: Mapping[str, Any]) -> str | None:
    """Our plclid from extension_attributes (a storefront module's order extension
    attribute), from the order's own data, or from its custom_attributes."""
    candidates: list[Any] = []
    extension = order.get("extension_attributes")
    for source in (extension if isinstance(extension, Mapping) else {}, order):
        candidates.extend(source.get(name) for name in CLICK_ATTRIBUTES)
    custom = order.get("custom_attributes")
    if isinstance(custom, Mapping):
        candidates.extend(custom.get(name) for name in CLICK_ATTRIBUTES)
    elif isinstance(custom, list):
        candidates.extend(
            attribute.get("value")
            for attribute in custom
            if isinstance(attribute, Mapping)
            and attribute.get("attribute_code") in CLICK_ATTRIBUTES
        )
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _is_child(item: Mapping[str, Any]) -> bool:
    """A configurable (or bundle) product's child row: its parent row carries the
    price, so counting it would count the product twice."""
    return item.get("parent_item_id") not in (None, "", 0, "0") or bool(item.get("parent_item"))


def _quantity(value: Any) -> int:
    if value is None or value == "":
        return 0
    qty = _decimal(value, what="an item's qty_ordered")
    # A decimal quantity (is_qty_decimal) is shown rounded; the line total stays exact.
    return money.round_minor(qty)


def _line(item: Mapping[str, Any], currency: str) -> OrderLine:
    what = f"item {item.get('item_id')}"
    total = _exact(item, "row_total", what=what) - abs(_exact(item, "discount_amount", what=what))
    name = item.get("name")
    sku = item.get("sku")
    return OrderLine(
        quantity=_quantity(item.get("qty_ordered")),
        unit_price_minor=to_minor(_exact(item, "price", what=what), currency),
        total_minor=to_minor(total, currency),
        line_id=as_text(item.get("item_id")),
        sku=sku if isinstance(sku, str) and sku else None,
        name=name if isinstance(name, str) and name else None,
    )


def _name(first: Any, last: Any) -> str | None:
    parts = [part.strip() for part in (first, last) if isinstance(part, str) and part.strip()]
    return " ".join(parts) or None


def _order_customer(order: Mapping[str, Any]) -> CustomerFacts | None:
    guest = _flag(order.get("customer_is_guest"))
    external_id = None if guest else as_text(order.get("customer_id"))
    email = order.get("customer_email")
    email = email if isinstance(email, str) and email else None
    name = _name(order.get("customer_firstname"), order.get("customer_lastname"))
    if external_id is None and email is None:
        return None
    return CustomerFacts(external_id=external_id, email=email, name=name, updated_at=None)


def order_snapshot(order: Mapping[str, Any]) -> OrderSnapshot:
    """A Magento order (REST GET /V1/orders item or an observer event's data.value)."""
    order_id = as_text(require(order, "entity_id", what="the order"))
    assert order_id is not None
    what = f"order {order_id}"
    currency = currency_of(order.get("order_currency_code"), what=what)
    subtotal = _exact(order, "subtotal", what=what, required=True)
    discount = abs(_exact(order, "discount_amount", what=what))
    ordered_at = parse_time(order.get("created_at"), what="created_at")
    if ordered_at is None:
        raise Unusable(f"{what} has no created_at")
    items = [item for item in order.get("items") or [] if isinstance(item, Mapping)]
    coupon = order.get("coupon_code")
    return OrderSnapshot(
        order_id=order_id,
        currency=currency,
        subtotal_minor=max(to_minor(subtotal - discount, currency), 0),
        total_minor=to_minor(_exact(order, "grand_total", what=what, required=True), currency),
        tax_minor=to_minor(_exact(order, "tax_amount", what=what), currency),
        shipping_minor=to_minor(_exact(order, "shipping_amount", what=what), currency),
        discount_minor=to_minor(discount, currency),
        status=_status(order, order_id),
        ordered_at=ordered_at,
        updated_at=parse_time(order.get("updated_at"), what="updated_at"),
        number=as_text(order.get("increment_id")),
        lines=tuple(_line(item, currency) for item in items if not _is_child(item)),
        coupon_codes=(coupon.strip(),) if isinstance(coupon, str) and coupon.strip() else (),
        click_id=click_id_of(order),
        customer=_order_customer(order),
    )


def creditmemo_facts(memo: Mapping[str, Any]) -> ShopEvent:
    """A credit memo's commissionable part: subtotal less its discount.

    The credit memo's fields (io-events_observer.sales_order_creditmemo_save_after
    _field-types.json) split grand_total into subtotal (the refunded items' row
    totals, without tax), discount_amount, tax_amount, shipping_amount and the
    free adjustment_positive / adjustment_negative (refund fee or extra refund,
    not tied to any product). Only the items after discount were commissionable,
    so the refund of the commission base is subtotal - |discount_amount|.
    """
    refund_id = as_text(require(memo, "entity_id", what="the credit memo"))
    order_id = as_text(require(memo, "order_id", what="the credit memo"))
    assert refund_id is not None
    assert order_id is not None
    state = as_text(memo.get("state"))
    if state == CREDITMEMO_CANCELED:
        return Ignored(f"credit memo {refund_id} is canceled")
    if state == CREDITMEMO_OPEN:
        return Ignored(f"credit memo {refund_id} is open, not refunded yet")
    what = f"credit memo {refund_id}"
    currency = currency_of(memo.get("order_currency_code"), what=what)
    amount = _exact(memo, "subtotal", what=what, required=True) - abs(
        _exact(memo, "discount_amount", what=what)
    )
    return RefundFacts(
        refund_id=refund_id,
        order_id=order_id,
        amount_minor=max(to_minor(amount, currency), 0),
        currency=currency,
        refunded_at=parse_time(memo.get("created_at"), what="created_at"),
    )


def customer_facts(customer: Mapping[str, Any]) -> CustomerFacts:
    external_id = as_text(require(customer, "id", what="the customer"))
    email = customer.get("email")
    return CustomerFacts(
        external_id=external_id,
        email=email if isinstance(email, str) and email else None,
        name=_name(customer.get("firstname"), customer.get("lastname")),
        updated_at=parse_time(customer.get("updated_at"), what="updated_at"),
    )


CONNECTOR = MagentoConnector()
