"""The fake shop: a shopper's click on an affiliate link, then the Shopify
webhooks of the order, signed as Shopify signs them.

Payloads follow Shopify's published 2026-04 order and refund shapes (the keys
and nesting of ../shared/fixtures/shopify/docs-example_2026-04_*.json; a test
holds them to it). Headers are Shopify's X-Shopify-* set: a new
X-Shopify-Webhook-Id per delivery, the same X-Shopify-Event-Id on every copy
of one event, the body byte for byte the same on a redelivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from partnerloop.core.money import format_amount, percentage_of
from partnerloop.simulator.plan import Event, Line, OrderState, PlannedOrder, Refund

API_VERSION = "2026-04"
SHIPPING_MINOR = 495
TAX_RATE = Decimal("21")  # VAT on top of the prices (taxes_included false)
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


def signature_of(secret: str, body: bytes) -> str:
    """Shopify's X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _money_set(amount: str, currency: str) -> dict[str, Any]:
    money = {"amount": amount, "currency_code": currency}
    return {"shop_money": money, "presentment_money": dict(money)}


def _line_item(line: Line, currency: str) -> dict[str, Any]:
    price = format_amount(line.price_minor, currency)
    discount = format_amount(line.discount_minor, currency)
    return {
        "id": line.line_id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line.line_id}",
        "current_quantity": line.quantity,
        "fulfillable_quantity": line.quantity,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": 100,
        "name": line.name,
        "price": price,
        "price_set": _money_set(price, currency),
        "product_exists": True,
        "product_id": None,
        "properties": [],
        "quantity": line.quantity,
        "requires_shipping": True,
        "sku": line.sku,
        "taxable": True,
        "title": line.name,
        "total_discount": discount,
        "total_discount_set": _money_set(discount, currency),
        "variant_id": None,
        "variant_title": None,
        "vendor": None,
        "tax_lines": [],
        "duties": [],
        "discount_allocations": [
            {
                "amount": discount,
                "amount_set": _money_set(discount, currency),
                "discount_application_index": 0,
            }
        ]
        if line.discount_minor
        else [],
    }


def refund_payload(
    order: PlannedOrder, refund: Refund, *, placed_at: datetime, currency: str
) -> dict[str, Any]:
    """A refunds/create body: the refunded line with its subtotal (without tax)."""
    at = _time(placed_at + timedelta(seconds=refund.offset))
    amount = format_amount(refund.amount_minor, currency)
    return {
        "id": refund.refund_id,
        "order_id": order.order_id,
        "created_at": at,
        "note": "Simulated return",
        "user_id": None,
        "processed_at": at,
        "duties": [],
        "total_duties_set": _money_set("0.00", currency),
        "return": None,
        "restock": False,
        "refund_shipping_lines": [],
        "admin_graphql_api_id": f"gid://shopify/Refund/{refund.refund_id}",
        "order_adjustments": [],
        "refund_line_items": [
            {
                "id": refund.refund_id + 1,
                "quantity": refund.line.quantity,
                "line_item_id": refund.line.line_id,
                "location_id": None,
                "restock_type": "no_restock",
                "subtotal": float(Decimal(amount)),
                "total_tax": 0,
                "subtotal_set": _money_set(amount, currency),
                "total_tax_set": _money_set("0.00", currency),
                # A refund's copy of the line has no current_quantity (Shopify's example).
                "line_item": {
                    k: v
                    for k, v in _line_item(refund.line, currency).items()
                    if k != "current_quantity"
                },
            }
        ],
        "transactions": [
            {
                "id": refund.refund_id + 2,
                "order_id": order.order_id,
                "kind": "refund",
                "gateway": "bogus",
                "status": "success",
                "amount": amount,
                "currency": currency,
                "created_at": at,
            }
        ],
    }


def order_payload(
    order: PlannedOrder,
    state: OrderState,
    *,
    placed_at: datetime,
    currency: str,
    shop_domain: str,
) -> dict[str, Any]:
    """An orders/* body for one state of the order."""
    shopper = order.shopper
    subtotal = state.subtotal_minor
    tax = percentage_of(subtotal, TAX_RATE)
    total = subtotal + SHIPPING_MINOR + tax
    discount = sum(line.discount_minor for line in state.lines)
    gross = sum(line.price_minor * line.quantity for line in state.lines)
    created = _time(placed_at)
    voided = state.financial_status == "voided"
    landing = "/products/sim"
    notes: list[dict[str, str]] = []
    if order.click_id and order.evidence == "landing_site":
        landing = f"/products/sim?plclid={order.click_id}"
    elif order.click_id and order.evidence == "note_attribute":
        notes = [{"name": "plclid", "value": order.click_id}]
    token = uuid.UUID(int=order.order_id).hex
    money = {
        "subtotal_price": format_amount(subtotal, currency),
        "total_price": format_amount(total, currency),
        "total_tax": format_amount(tax, currency),
        "total_discounts": format_amount(discount, currency),
        "total_line_items_price": format_amount(gross, currency),
    }
    customer = {
        "id": shopper.shopify_id,
        "created_at": created,
        "updated_at": created,
        "first_name": shopper.first_name,
        "last_name": shopper.last_name,
        "state": "enabled",
        "note": None,
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "email": shopper.email,
        "phone": None,
        "currency": currency,
        "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{shopper.shopify_id}",
    }
    return {
        "id": order.order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
        "app_id": None,
        "browser_ip": None,
        "buyer_accepts_marketing": False,
        "cancel_reason": "declined" if voided else None,
        "cancelled_at": _time(placed_at + timedelta(seconds=state.updated_offset))
        if voided
        else None,
        "cart_token": None,
        "checkout_token": None,
        "client_details": None,
        "closed_at": None,
        "confirmation_number": token[:9].upper(),
        "confirmed": True,
        "contact_email": shopper.email,
        "created_at": created,
        "currency": currency,
        "current_subtotal_price": money["subtotal_price"],
        "current_subtotal_price_set": _money_set(money["subtotal_price"], currency),
        "current_total_discounts": money["total_discounts"],
        "current_total_price": money["total_price"],
        "current_total_price_set": _money_set(money["total_price"], currency),
        "current_total_tax": money["total_tax"],
        "current_total_tax_set": _money_set(money["total_tax"], currency),
        "customer": customer,
        "customer_locale": "en",
        "discount_applications": [
            {
                "target_type": "line_item",
                "type": "discount_code",
                "value": format_amount(discount, currency),
                "value_type": "fixed_amount",
                "allocation_method": "across",
                "target_selection": "all",
                "code": order.coupon,
            }
        ]
        if order.coupon
        else [],
        "discount_codes": [
            {"code": order.coupon, "amount": money["total_discounts"], "type": "fixed_amount"}
        ]
        if order.coupon
        else [],
        "email": shopper.email,
        "estimated_taxes": False,
        "financial_status": state.financial_status,
        "fulfillment_status": None,
        "fulfillments": [],
        "landing_site": landing,
        "landing_site_ref": None,
        "line_items": [_line_item(line, currency) for line in state.lines],
        "name": f"#{order.number}",
        "note": None,
        "note_attributes": notes,
        "number": order.number - 1000,
        "order_number": order.number,
        "order_status_url": f"https://{shop_domain}/orders/{token}/authenticate",
        "payment_gateway_names": ["bogus"],
        "phone": None,
        "presentment_currency": currency,
        "processed_at": created,
        "reference": None,
        "referring_site": "https://blog.sim.example/post",
        "refunds": [
            refund_payload(order, refund, placed_at=placed_at, currency=currency)
            for refund in state.refunded
        ],
        "shipping_lines": [],
        "source_name": "web",
        "subtotal_price": money["subtotal_price"],
        "subtotal_price_set": _money_set(money["subtotal_price"], currency),
        "tags": "",
        "tax_lines": [
            {
                "price": money["total_tax"],
                "rate": float(TAX_RATE / 100),
                "title": "VAT",
                "price_set": _money_set(money["total_tax"], currency),
            }
        ],
        "taxes_included": False,
        "test": False,
        "token": token,
        "total_discounts": money["total_discounts"],
        "total_discounts_set": _money_set(money["total_discounts"], currency),
        "total_line_items_price": money["total_line_items_price"],
        "total_line_items_price_set": _money_set(money["total_line_items_price"], currency),
        "total_price": money["total_price"],
        "total_price_set": _money_set(money["total_price"], currency),
        "total_shipping_price_set": _money_set(format_amount(SHIPPING_MINOR, currency), currency),
        "total_tax": money["total_tax"],
        "total_tax_set": _money_set(money["total_tax"], currency),
        "total_weight": 0,
        "updated_at": _time(placed_at + timedelta(seconds=state.updated_offset)),
        "user_id": None,
    }


@dataclass
class ShopStats:
    """What the shop saw: request latencies (seconds) and answers, thread-safe."""

    webhook_seconds: list[float] = field(default_factory=list)
    click_seconds: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # "200 accepted" -> count
    errors: list[str] = field(default_factory=list)
    first_sent: dict[int, float] = field(default_factory=dict)  # order id -> time.time()
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, answer: str) -> None:
        with self.lock:
            self.statuses[answer] = self.statuses.get(answer, 0) + 1


@dataclass
class ShopConfig:
    base_url: str  # the partnerloop instance
    hook_path: str  # /hooks/{connector id}
    secret: str
    shop_domain: str
    currency: str
    link_codes: list[str]  # by affiliate index


class FakeShop:
    """Sends one planned order: the shopper's click first (when the order carries
    one), then every event of the order, every copy of each."""

    def __init__(self, config: ShopConfig, stats: ShopStats) -> None:
        self.config = config
        self.stats = stats

    def click(self, client: httpx.Client, order: PlannedOrder) -> None:
        if order.affiliate is None or order.evidence not in ("landing_site", "note_attribute"):
            return
        code = self.config.link_codes[order.affiliate]
        started = time.perf_counter()
        response = client.get(
            f"{self.config.base_url}/r/{code}",
            params={"sub1": "simulator"},
            headers={"User-Agent": USER_AGENT, "Referer": "https://blog.sim.example/post"},
        )
        with self.stats.lock:
            self.stats.click_seconds.append(time.perf_counter() - started)
        if response.status_code != 302:
            raise ShopError(f"GET /r/{code} answered {response.status_code}, not 302")
        location = response.headers.get("location", "")
        click_id = parse_qs(urlsplit(location).query).get("plclid", [None])[0]
        if not click_id:
            raise ShopError(f"GET /r/{code} redirected without a plclid: {location}")
        order.click_id = click_id

    def send_order(self, client: httpx.Client, order: PlannedOrder) -> None:
        self.click(client, order)
        placed_at = datetime.now(UTC)
        with self.stats.lock:
            self.stats.first_sent[order.order_id] = time.time()
        for event in order.events:
            self.send_event(client, order, event, placed_at=placed_at)

    def body_of(self, order: PlannedOrder, event: Event, *, placed_at: datetime) -> bytes:
        if event.refund is not None:
            payload = refund_payload(
                order, event.refund, placed_at=placed_at, currency=self.config.currency
            )
        else:
            assert event.state is not None
            payload = order_payload(
                order,
                event.state,
                placed_at=placed_at,
                currency=self.config.currency,
                shop_domain=self.config.shop_domain,
            )
        return json.dumps(payload).encode()

    def send_event(
        self, client: httpx.Client, order: PlannedOrder, event: Event, *, placed_at: datetime
    ) -> None:
        body = self.body_of(order, event, placed_at=placed_at)
        for _ in range(event.copies):
            self.post(client, order, event, body)

    def post(self, client: httpx.Client, order: PlannedOrder, event: Event, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": event.topic,
            "X-Shopify-Hmac-Sha256": signature_of(self.config.secret, body),
            "X-Shopify-Shop-Domain": self.config.shop_domain,
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": event.event_id,
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "X-Shopify-Order-Id": str(order.order_id),
        }
        started = time.perf_counter()
        # Shopify retries a failed delivery (8 times over 4 hours); a few quick
        # tries stand in for that, so a restart of the instance loses nothing.
        for attempt in range(4):
            try:
                response = client.post(
                    f"{self.config.base_url}{self.config.hook_path}", content=body, headers=headers
                )
            except httpx.HTTPError as error:
                if attempt == 3:
                    raise ShopError(f"{event.topic} not delivered: {error}") from None
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code < 500 or attempt == 3:
                break
            time.sleep(0.5 * 2**attempt)
        with self.stats.lock:
            self.stats.webhook_seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise ShopError(
                f"{event.topic} of order {order.order_id} answered {response.status_code}: "
                f"{response.text[:200]}"
            )
        self.stats.count(f"200 {response.json().get('status', '?')}")


class ShopError(Exception):
    """The instance refused something a real shop would send (the run stops)."""


ShopFactory = Callable[[ShopConfig, ShopStats], FakeShop]
