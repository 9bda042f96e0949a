"""WooCommerce write-back: a customer's CRM values as customer meta `crm_<property>`.

`PUT /wp-json/wc/v3/customers/{id}` with `{"meta_data": [{"key", "value"}, ...]}`:
WooCommerce's REST controller calls `update_meta_data(key, value)` for each item
without an `id`, so an existing key is updated in place, never duplicated, and
every other meta key of the customer stays. One request, no read first; a
cleared value is written as an empty string (WooCommerce keeps the key).

Only registered customers (WordPress users) have meta: a guest order has
customer id 0, and there is nothing to write to.

Answers: a customer deleted in the shop answers 400 `woocommerce_rest_invalid_id`
("Invalid resource ID.": the controller finds no user) or 404: permanent.
401 = wrong keys, or Basic auth over plain HTTP (WooCommerce accepts it only over
HTTPS): retried, the merchant fixes it. 400/403/409/422 = refused with
WooCommerce's `message` (permanent); 429 (a host's or firewall's limit) waits
Retry-After; 5xx, timeouts and connection errors are retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from partnerloop.integrations.writeback import (
    CUSTOMER_ID,
    MAX_MESSAGE_CHARS,
    PREFIX,
    excerpt,
    json_object,
    judge_failure,
    send,
)
from partnerloop.sync.worker import Outcome

VENDOR = "WooCommerce"
META_PREFIX = f"{PREFIX}_"
GUEST_IDS = ("", "0")
AUTH_HINT = "check the connector's REST API keys: read/write, sent over HTTPS"
# What WooCommerce answers for a customer id that names no user.
NO_SUCH_CUSTOMER = "woocommerce_rest_invalid_id"


def write_meta(
    client: httpx.Client,
    *,
    api: str,
    auth: httpx.Auth,
    customer_id: str,
    values: Mapping[str, str | None],
) -> Outcome:
    """Set the customer's `crm_<property>` meta to `values`; `api` is
    https://{store}/wp-json/wc/v3."""
    if customer_id in GUEST_IDS:
        return Outcome(ok=True, response="a guest order: there is no customer account to write to")
    if not CUSTOMER_ID.fullmatch(customer_id):
        return Outcome(
            ok=False, error=f"{customer_id!r} is not a WooCommerce customer id", permanent=True
        )
    url = f"{api}/customers/{customer_id}"
    response = send(
        client, "PUT", url, vendor=VENDOR, judge=judge, json=meta_body(values), auth=auth
    )
    if isinstance(response, Outcome):
        return response
    if "id" not in json_object(response):
        # A 2xx page that is not the REST API (e.g. a store_url that is not the
        # WordPress address): nothing was written.
        return Outcome(
            ok=False,
            error=f"{VENDOR} answered {response.status_code} without the customer; "
            "is store_url the WordPress site's address?",
            status_code=response.status_code,
            response=excerpt(response),
        )
    return Outcome(ok=True, status_code=response.status_code, response=excerpt(response))


def meta_body(values: Mapping[str, str | None]) -> dict[str, Any]:
    """The PUT body: one meta item per property, sorted by key."""
    meta = {f"{META_PREFIX}{name}": value or "" for name, value in values.items()}
    return {"meta_data": [{"key": key, "value": meta[key]} for key in sorted(meta)]}


def judge(response: httpx.Response) -> Outcome:
    """A failed answer as an Outcome (see the module docstring)."""
    data = json_object(response)
    return judge_failure(
        response,
        vendor=VENDOR,
        message=_message(response, data),
        gone=data.get("code") == NO_SUCH_CUSTOMER,
        auth_hint=AUTH_HINT,
    )


def _message(response: httpx.Response, data: Mapping[str, Any]) -> str:
    """WordPress REST errors: {"code": ..., "message": ..., "data": {"status": ...}}."""
    message, code = data.get("message"), data.get("code")
    if message and code:
        text = f"{message} ({code})"
    else:
        text = str(message or code or response.reason_phrase or f"HTTP {response.status_code}")
    return text[:MAX_MESSAGE_CHARS]
