"""Shopify: HTTPS webhooks (X-Shopify-* and the newer un-prefixed shopify-*
headers), base64 HMAC-SHA256 of the raw body, dedupe on the event id.

Amounts are the shop-currency decimal strings of the order (`subtotal_price`
and friends); ids are parsed as exact integers (they exceed 2^53).
Facts and sources: ../shared/fixtures/NOTES.md section 1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from partnerloop.core.money import proportion_of
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
    parse_object,
    parse_time,
    require,
)
from partnerloop.integrations.shopify import writeback
from partnerloop.orders.snapshots import (
    Cancellation,
    CustomerFacts,
    OrderLine,
    OrderSnapshot,
    RefundFacts,
)
from partnerloop.privacy.service import PrivacyFacts
from partnerloop.sync.worker import Outcome

API_VERSION = "2026-04"
ORDER_TOPICS = (
    "orders/create",
    "orders/paid",
    "orders/updated",
    "orders/cancelled",
    "orders/fulfilled",
    "orders/partially_fulfilled",
    "orders/edited",
)
CUSTOMER_TOPICS = ("customers/create", "customers/update")
PRIVACY_TOPICS = {
    "customers/data_request": "data_request",
    "customers/redact": "customer_redact",
    "shop/redact": "shop_redact",
}
IGNORED_TOPICS = (
    "app/uninstalled",
    "customers/delete",
    # Payments are read from the order's financial_status (orders/paid, orders/updated).
    "order_transactions/create",
)
PAID_STATUSES = ("paid", "partially_refunded", "refunded")
# A note or cart attribute carrying our click id (set by the storefront snippet).
CLICK_ATTRIBUTES = ("plclid", "partnerloop_click_id", "_plclid")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Shopify's classic X-Shopify-* header or the newer un-prefixed shopify-* one."""
    return headers.get(f"x-shopify-{name}") or headers.get(f"shopify-{name}")


def signature_of(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac_sha256(secret.encode(), body)).decode()


class ShopifyConnector:
    kind = "shopify"
    settings_fields: Mapping[str, bool] = {"shop_domain": True}
    credential_fields: Sequence[str] = ("access_token",)

    def verify(
        self,
        request: Any,
        *,
        secrets: Sequence[str],
        config: ConnectorConfig,
        now: datetime,
    ) -> Delivery | Answer:
        given = _header(request.headers, "hmac-sha256")
        if not given:
            raise BadSignature("missing X-Shopify-Hmac-Sha256 header")
        if not any(matches(signature_of(secret, request.body), given) for secret in secrets):
            raise BadSignature("the X-Shopify-Hmac-Sha256 signature does not match")
        domain = _header(request.headers, "shop-domain")
        expected = str(config.settings.get("shop_domain", "")).lower()
        if domain and expected and domain.lower() != expected:
            raise BadSignature(f"a webhook from {domain}; this connector is for {expected}")
        topic = _header(request.headers, "topic") or "unknown"
        event_id = (
            _header(request.headers, "event-id")
            or _header(request.headers, "webhook-id")
            or f"sha256:{body_hash(request.body)}"
        )
        return Delivery(topic=topic[:64], event_id=event_id)

    def normalise(self, topic: str, payload: bytes, *, config: ConnectorConfig) -> list[ShopEvent]:
        data = parse_object(payload)
        if topic in ORDER_TOPICS:
            return [order_snapshot(data, config=config)]
        if topic == "orders/delete":
            order_id = as_text(require(data, "id", what="the deleted order"))
            assert order_id is not None
            return [Cancellation(order_id=order_id, reason="deleted in Shopify")]
        if topic == "refunds/create":
            return [refund_facts(data, config=config)]
        if topic in CUSTOMER_TOPICS:
            return [customer_facts(data)]
        if topic in PRIVACY_TOPICS:
            return [privacy_facts(PRIVACY_TOPICS[topic], data)]
        if topic in IGNORED_TOPICS:
            return [Ignored(f"{topic} changes nothing in partnerloop")]
        raise Unusable(f"unknown topic {topic!r}")

    def pull(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        since: datetime,
        cursor: Mapping[str, Any] | None,
    ) -> Iterator[PulledPage]:
        """GET /admin/api/{version}/orders.json, oldest first, following the Link
        header's page_info cursor (Shopify's REST pagination)."""
        base = str(
            config.settings.get("api_base_url") or f"https://{config.settings['shop_domain']}"
        )
        token = config.credentials.get("access_token")
        if not token:
            raise Unusable("a Shopify backfill needs credentials.access_token")
        headers = {"X-Shopify-Access-Token": token}
        url: str | None = (cursor or {}).get("next_url") or (
            f"{base}/admin/api/{API_VERSION}/orders.json?status=any&limit=250"
            f"&updated_at_min={since.isoformat()}&order=updated_at+asc"
        )
        while url:
            response = get_with_retry(client, url, headers=headers)
            orders = parse_object(response.content).get("orders") or []
            next_url = response.links.get("next", {}).get("url")
            yield PulledPage(
                items=[
                    PulledItem(
                        topic="orders/updated",
                        event_id=f"pull:order:{order['id']}:{order.get('updated_at')}",
                        payload=_dump(order),
                    )
                    for order in orders
                ],
                cursor={"next_url": next_url} if next_url else {},
                done=next_url is None,
            )
            url = next_url

    def write_customer(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        customer_id: str,
        values: Mapping[str, str | None],
        now: datetime,
    ) -> Outcome:
        """Write the customer's CRM values as `crm:` tags (see shopify/writeback.py)."""
        domain = config.settings.get("shop_domain")
        base = config.settings.get("api_base_url") or (f"https://{domain}" if domain else None)
        token = config.credentials.get("access_token")
        if not base or not token:
            return Outcome(
                ok=False,
                error="a Shopify write-back needs settings.shop_domain and credentials.access_token",
            )
        return writeback.write_tags(
            client,
            api=f"{str(base).rstrip('/')}/admin/api/{API_VERSION}",
            token=token,
            customer_id=customer_id,
            values=values,
        )


def _dump(value: Any) -> bytes:
    return json.dumps(value, default=str).encode()


def _money_set(data: Mapping[str, Any], key: str) -> Any:
    value = data.get(key)
    if isinstance(value, Mapping):
        return (value.get("shop_money") or {}).get("amount")
    return None


def click_id_of(order: Mapping[str, Any]) -> str | None:
    """Our plclid from the landing page URL, else from note/cart attributes."""
    for attribute in order.get("note_attributes") or []:
        if isinstance(attribute, Mapping) and attribute.get("name") in CLICK_ATTRIBUTES:
            value = attribute.get("value")
            if isinstance(value, str) and value.strip():
                return value.strip()
    landing = order.get("landing_site")
    if isinstance(landing, str) and landing:
        values = parse_qs(urlsplit(landing).query).get("plclid")
        if values:
            return values[0]
    return None


def _line(item: Mapping[str, Any], currency: str, taxes_included: bool) -> OrderLine:
    quantity = int(item.get("quantity") or 0)
    price = minor(item.get("price"), currency, what="a line item's price")
    allocations = item.get("discount_allocations") or []
    if allocations:
        discount = sum(
            minor(a.get("amount"), currency, what="a line discount") for a in allocations
        )
    else:
        discount = minor_or_zero(item.get("total_discount"), currency, what="a line discount")
    total = price * quantity - discount
    if taxes_included:
        total -= _line_tax(item, currency)
    return OrderLine(
        quantity=quantity,
        unit_price_minor=price,
        total_minor=total,
        line_id=as_text(item.get("id")),
        sku=item.get("sku") or None,
        name=item.get("name") or item.get("title"),
    )


def _line_tax(item: Mapping[str, Any], currency: str) -> int:
    return sum(
        minor(tax.get("price"), currency, what="a line's tax")
        for tax in item.get("tax_lines") or []
    )


def order_snapshot(order: Mapping[str, Any], *, config: ConnectorConfig) -> OrderSnapshot:
    order_id = as_text(require(order, "id", what="the order"))
    assert order_id is not None
    currency = currency_of(order.get("currency"), what=f"order {order_id}")
    taxes_included = bool(order.get("taxes_included"))
    subtotal = minor(
        order.get("subtotal_price"), currency, what=f"order {order_id}'s subtotal_price"
    )
    if taxes_included:
        # Prices include tax in such shops; the commission base never does.
        subtotal -= sum(_line_tax(item, currency) for item in order.get("line_items") or [])
    financial = order.get("financial_status")
    if order.get("cancelled_at") or financial == "voided":
        status = "cancelled"
    elif financial in PAID_STATUSES:
        status = "paid"
    else:
        status = "pending"  # pending, authorized, partially_paid: not paid yet
    ordered_at = parse_time(order.get("processed_at") or order.get("created_at"), what="created_at")
    if ordered_at is None:
        raise Unusable(f"order {order_id} has no created_at")
    customer = order.get("customer") if isinstance(order.get("customer"), Mapping) else None
    email = (customer or {}).get("email") or order.get("email") or order.get("contact_email")
    return OrderSnapshot(
        order_id=order_id,
        currency=currency,
        subtotal_minor=max(subtotal, 0),
        total_minor=minor(
            order.get("total_price"), currency, what=f"order {order_id}'s total_price"
        ),
        tax_minor=minor_or_zero(order.get("total_tax"), currency, what="total_tax"),
        shipping_minor=minor_or_zero(
            _money_set(order, "total_shipping_price_set"), currency, what="shipping"
        ),
        discount_minor=minor_or_zero(order.get("total_discounts"), currency, what="discounts"),
        status=status,
        ordered_at=ordered_at,
        updated_at=parse_time(order.get("updated_at"), what="updated_at"),
        number=as_text(order.get("name")) or as_text(order.get("order_number")),
        lines=tuple(
            _line(item, currency, taxes_included) for item in order.get("line_items") or []
        ),
        coupon_codes=tuple(
            str(code["code"])
            for code in order.get("discount_codes") or []
            if isinstance(code, Mapping) and code.get("code")
        ),
        click_id=click_id_of(order),
        customer=CustomerFacts(
            external_id=as_text((customer or {}).get("id")),
            email=email if isinstance(email, str) else None,
            name=_name(customer or {}),
            updated_at=None,
        )
        if customer or email
        else None,
        refunds=tuple(
            refund_facts(refund, config=config, currency=currency)
            for refund in order.get("refunds") or []
        ),
    )


def refund_facts(
    refund: Mapping[str, Any], *, config: ConnectorConfig, currency: str | None = None
) -> RefundFacts:
    """The commission part of a refund: its refunded lines (without tax); a refund
    without lines (an amount refund) counts its refund transactions less any
    shipping adjustment."""
    refund_id = as_text(require(refund, "id", what="the refund"))
    order_id = as_text(require(refund, "order_id", what="the refund"))
    assert refund_id is not None
    assert order_id is not None
    lines = refund.get("refund_line_items") or []
    if currency is None:
        currency = config.program_currency
        for line in lines:
            code = ((line.get("subtotal_set") or {}).get("shop_money") or {}).get("currency_code")
            if code:
                currency = currency_of(code, what=f"refund {refund_id}")
                break
    if lines:
        amount = sum(_refund_line(line, currency, refund_id) for line in lines)
    else:
        amount = sum(
            minor(t.get("amount"), currency, what=f"refund {refund_id}'s transaction")
            for t in refund.get("transactions") or []
            if t.get("kind") == "refund" and t.get("status") in (None, "success")
        ) + sum(
            minor(a.get("amount"), currency, what=f"refund {refund_id}'s adjustment")
            for a in refund.get("order_adjustments") or []
        )
    return RefundFacts(
        refund_id=refund_id,
        order_id=order_id,
        amount_minor=max(amount, 0),
        currency=currency,
        refunded_at=parse_time(refund.get("processed_at") or refund.get("created_at"), what="date"),
    )


def _refund_line(line: Mapping[str, Any], currency: str, refund_id: str) -> int:
    what = f"refund {refund_id}'s line"
    subtotal = _money_set(line, "subtotal_set") or line.get("subtotal")
    if subtotal is not None:
        return minor(subtotal, currency, what=what)
    # Older REST shape: no subtotal; the refunded quantity of the line, less its
    # share of the line's discount (rounded by the one money rule).
    item = line.get("line_item") or {}
    quantity = int(line.get("quantity") or 0)
    ordered = int(item.get("quantity") or quantity or 1)
    price = minor(item.get("price"), currency, what=what)
    discount = minor_or_zero(item.get("total_discount"), currency, what=what)
    return price * quantity - proportion_of(discount, quantity, ordered)


def _name(customer: Mapping[str, Any]) -> str | None:
    parts = [customer.get("first_name"), customer.get("last_name")]
    name = " ".join(part for part in parts if isinstance(part, str) and part.strip())
    return name or None


def customer_facts(customer: Mapping[str, Any]) -> CustomerFacts:
    external_id = as_text(require(customer, "id", what="the customer"))
    email = customer.get("email")
    return CustomerFacts(
        external_id=external_id,
        email=email if isinstance(email, str) else None,
        name=_name(customer),
        updated_at=parse_time(customer.get("updated_at"), what="updated_at"),
    )


def privacy_facts(kind: str, data: Mapping[str, Any]) -> PrivacyFacts:
    customer = data.get("customer") if isinstance(data.get("customer"), Mapping) else {}
    customer_id = as_text((customer or {}).get("id"))
    if kind == "data_request":
        request = data.get("data_request") or {}
        external_id = f"data_request:{as_text(request.get('id')) or customer_id}"
    elif kind == "customer_redact":
        orders = ",".join(str(o) for o in data.get("orders_to_redact") or [])
        external_id = f"customer_redact:{customer_id}:{orders}"
    else:
        external_id = f"shop_redact:{as_text(data.get('shop_id'))}"
    return PrivacyFacts(
        kind=kind, external_id=external_id, customer_external_id=customer_id, details=dict(data)
    )


CONNECTOR = ShopifyConnector()
