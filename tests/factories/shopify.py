"""Shopify webhooks as the shop signs and sends them, and its docs' example orders."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx

from partnerloop.core.clock import utcnow
from tests.factories.connectors import create_connector_api, fixture_json, hook_path
from tests.factories.programs import create_program_api

SECRET = "shpss_test_secret"
SHOP = "jsmith.myshopify.com"


def sign(body: bytes, secret: str = SECRET) -> str:
    # Written out here, independently of the connector: base64 HMAC-SHA256 of the raw body.
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def docs_body(topic: str) -> bytes:
    """The webhook body of Shopify's docs example for a topic (the file's `response`)."""
    name = f"docs-example_2026-04_{topic.replace('/', '_')}.json"
    return json.dumps(fixture_json("shopify", name)["response"]).encode()


def docs_order(topic: str = "orders/create") -> dict[str, Any]:
    return dict(
        fixture_json("shopify", f"docs-example_2026-04_{topic.replace('/', '_')}.json")["response"]
    )


def deliver(
    api: httpx.Client,
    connector: dict[str, Any],
    topic: str,
    body: bytes,
    *,
    event_id: str,
    secret: str = SECRET,
    prefixed: bool = True,
) -> httpx.Response:
    prefix = "X-Shopify-" if prefixed else "shopify-"
    headers = {
        f"{prefix}Topic": topic,
        f"{prefix}Hmac-Sha256": sign(body, secret),
        f"{prefix}Shop-Domain": SHOP,
        f"{prefix}Event-Id": event_id,
        f"{prefix}Webhook-Id": f"wh-{event_id}",
        f"{prefix}Triggered-At": "2026-05-11T15:06:59.110521905Z",
        "Content-Type": "application/json",
    }
    return api.post(hook_path(connector), content=body, headers=headers)


def setup(api: httpx.Client, *, currency: str = "USD") -> tuple[dict[str, Any], dict[str, Any]]:
    program = create_program_api(api, currency=currency)
    connector = create_connector_api(
        api, program["id"], "shopify", secret=SECRET, settings={"shop_domain": SHOP}
    )
    return program, connector


def paid_order(
    order_id: int, *, updated_at: str = "2026-11-20T10:00:00-05:00", **changes: Any
) -> dict[str, Any]:
    """Shopify's example order, paid and not cancelled, under another id (a scenario copy)."""
    order = docs_order()
    placed = utcnow().isoformat()  # after the test's clicks: inside the cookie window
    order.update(
        id=order_id,
        financial_status="paid",
        cancelled_at=None,
        cancel_reason=None,
        created_at=placed,
        processed_at=placed,
        updated_at=updated_at,
    )
    order.update(changes)
    return order
