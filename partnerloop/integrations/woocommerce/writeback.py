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

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import httpx

from partnerloop.integrations.writeback import PREFIX
from partnerloop.sync.worker import Outcome

VENDOR = "WooCommerce"
META_PREFIX = f"{PREFIX}_"
MAX_MESSAGE_CHARS = 300
MAX_RESPONSE_CHARS = 1000
PERMANENT_STATUSES = (400, 403, 404, 409, 422)
GUEST_IDS = ("", "0")
CUSTOMER_ID = re.compile(r"[0-9]{1,20}")
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
    try:
        response = client.put(url, json=meta_body(values), auth=auth)
    except httpx.TimeoutException:
        return Outcome(ok=False, error=f"{VENDOR} did not answer in time")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not reach {VENDOR}: {error}")
    if not response.is_success:
        return judge(response)
    if "id" not in _json(response):
        # A 2xx page that is not the REST API (e.g. a store_url that is not the
        # WordPress address): nothing was written.
        return Outcome(
            ok=False,
            error=f"{VENDOR} answered {response.status_code} without the customer; "
            "is store_url the WordPress site's address?",
            status_code=response.status_code,
            response=_excerpt(response),
        )
    return Outcome(ok=True, status_code=response.status_code, response=_excerpt(response))


def meta_body(values: Mapping[str, str | None]) -> dict[str, Any]:
    """The PUT body: one meta item per property, sorted by key."""
    meta = {f"{META_PREFIX}{name}": value or "" for name, value in values.items()}
    return {"meta_data": [{"key": key, "value": meta[key]} for key in sorted(meta)]}


def judge(response: httpx.Response) -> Outcome:
    """A failed answer as an Outcome (see the module docstring)."""
    status = response.status_code
    excerpt = _excerpt(response)
    data = _json(response)
    message = _message(response, data)
    if status == 404 or data.get("code") == NO_SUCH_CUSTOMER:
        return Outcome(
            ok=False,
            error=f"the customer no longer exists in {VENDOR} (deleted there): {message}",
            permanent=True,
            status_code=status,
            response=excerpt,
        )
    if status == 429:
        return Outcome(
            ok=False,
            error=f"{VENDOR} rate limit: {message}",
            retry_after=_retry_after(response) or 1.0,
            status_code=status,
            response=excerpt,
        )
    hint = " (check the connector's REST API keys: read/write, sent over HTTPS)"
    return Outcome(
        ok=False,
        error=f"{VENDOR} answered {status}: {message}" + (hint if status in (401, 403) else ""),
        permanent=status in PERMANENT_STATUSES,
        retry_after=_retry_after(response),
        status_code=status,
        response=excerpt,
    )


def _message(response: httpx.Response, data: Mapping[str, Any]) -> str:
    """WordPress REST errors: {"code": ..., "message": ..., "data": {"status": ...}}."""
    message, code = data.get("message"), data.get("code")
    if message and code:
        text = f"{message} ({code})"
    else:
        text = str(message or code or response.reason_phrase or f"HTTP {response.status_code}")
    return text[:MAX_MESSAGE_CHARS]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _excerpt(response: httpx.Response) -> str | None:
    return response.text[:MAX_RESPONSE_CHARS] if response.content else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return max(seconds, 0.0) if seconds is not None and math.isfinite(seconds) else None
