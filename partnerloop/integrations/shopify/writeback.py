"""Shopify write-back: a customer's CRM values as `crm:<property>:<item>` tags.

The REST Admin API has no "add these, remove those" call for a customer's tags:
`PUT /admin/api/{version}/customers/{id}.json` replaces the whole `tags` string
(comma-separated). So a write reads the customer first (GET), keeps every tag
the merchant set (anything not starting with `crm:`, compared case-insensitively)
in its order, replaces all `crm:` tags with the current values and PUTs only
when that changes the set of tags. A property's value may hold several items
separated by `;` (HubSpot's multi-value convention): one tag per item.

Shopify has no conditional update for customers, so a tag the merchant adds
between our GET and PUT (milliseconds apart) is lost; the next write-back of
that customer does not bring it back. Shopify tags are at most 255 characters
and cannot contain a comma (the list separator): such a value is refused before
any request, permanently (retrying cannot make it fit).

Answers: 404 = the customer was deleted in the shop (permanent); 429 = Shopify's
leaky-bucket limit, wait Retry-After (seconds, e.g. "2.0"); 401 = the access
token is wrong or the app was uninstalled (retried, the merchant fixes it);
400/403/409/422 = refused with Shopify's `errors` message (permanent); 5xx,
timeouts and connection errors are retried.
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

VENDOR = "Shopify"
TAG_PREFIX = f"{PREFIX}:"
MAX_TAG_CHARS = 255
MAX_MESSAGE_CHARS = 300
MAX_RESPONSE_CHARS = 1000
PERMANENT_STATUSES = (400, 403, 404, 409, 422)
# Shopify customer ids are integers (above 2^53: never through a float).
CUSTOMER_ID = re.compile(r"[0-9]{1,20}")
UP_TO_DATE = "already up to date"


def write_tags(
    client: httpx.Client,
    *,
    api: str,
    token: str,
    customer_id: str,
    values: Mapping[str, str | None],
) -> Outcome:
    """Make the customer's `crm:` tags say `values`; `api` is
    https://{shop}/admin/api/{version}."""
    if not CUSTOMER_ID.fullmatch(customer_id):
        return Outcome(
            ok=False, error=f"{customer_id!r} is not a Shopify customer id", permanent=True
        )
    wanted = crm_tags(values)
    refusal = next((reason for tag in wanted if (reason := unfit(tag))), None)
    if refusal:
        return Outcome(ok=False, error=refusal, permanent=True)
    url = f"{api}/customers/{customer_id}.json"
    headers = {"X-Shopify-Access-Token": token, "Accept": "application/json"}
    got = _request(client, "GET", url, headers=headers)
    if isinstance(got, Outcome):
        return got
    current = _tags_of(got)
    if current is None:
        return Outcome(
            ok=False,
            error="Shopify's answer has no customer.tags",
            status_code=got.status_code,
            response=_excerpt(got),
        )
    tags = merged(current, wanted)
    if set(tags) == set(current):
        return Outcome(ok=True, status_code=got.status_code, response=UP_TO_DATE)
    body = {"customer": {"id": int(customer_id), "tags": ", ".join(tags)}}
    put = _request(client, "PUT", url, headers=headers, json=body)
    if isinstance(put, Outcome):
        return put
    return Outcome(ok=True, status_code=put.status_code, response=_excerpt(put))


def crm_tags(values: Mapping[str, str | None]) -> list[str]:
    """`crm:<property>:<item>` for each property (sorted) and each non-empty item."""
    return [f"{TAG_PREFIX}{name}:{item}" for name in sorted(values) for item in items(values[name])]


def items(value: str | None) -> list[str]:
    """A value's items: `;`-separated, trimmed (Shopify trims tags), empties dropped."""
    return [item.strip() for item in (value or "").split(";") if item.strip()]


def unfit(tag: str) -> str | None:
    """Why Shopify cannot hold this tag, or None."""
    if "," in tag:
        # It would silently become two tags, one of them outside the crm: namespace.
        return f"the Shopify tag {tag[:MAX_MESSAGE_CHARS]!r} contains a comma"
    if len(tag) > MAX_TAG_CHARS:
        return (
            f"the Shopify tag {tag[:MAX_MESSAGE_CHARS]!r} is {len(tag)} characters long; "
            f"Shopify allows at most {MAX_TAG_CHARS}"
        )
    return None


def split_tags(tags: str) -> list[str]:
    return [tag.strip() for tag in tags.split(",") if tag.strip()]


def merged(current: list[str], wanted: list[str]) -> list[str]:
    """The merchant's own tags in their order, then ours; duplicates once."""
    own = [tag for tag in current if not tag.lower().startswith(TAG_PREFIX)]
    return list(dict.fromkeys(own + wanted))


def _tags_of(response: httpx.Response) -> list[str] | None:
    customer = _json(response).get("customer")
    if not isinstance(customer, dict):
        return None
    tags = customer.get("tags")
    if tags is None:
        return []
    return split_tags(tags) if isinstance(tags, str) else None


# --- talking to Shopify ------------------------------------------------------------------


def _request(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> httpx.Response | Outcome:
    """The answer when it is 2xx, else what it means as an Outcome."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        return Outcome(ok=False, error=f"{VENDOR} did not answer in time")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not reach {VENDOR}: {error}")
    if response.is_success:
        return response
    return judge(response)


def judge(response: httpx.Response) -> Outcome:
    """A failed answer as an Outcome (see the module docstring)."""
    status = response.status_code
    excerpt = _excerpt(response)
    message = _message(response)
    if status == 404:
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
    hint = " (check the connector's access token and the app's write_customers scope)"
    return Outcome(
        ok=False,
        error=f"{VENDOR} answered {status}: {message}" + (hint if status in (401, 403) else ""),
        permanent=status in PERMANENT_STATUSES,
        retry_after=_retry_after(response),
        status_code=status,
        response=excerpt,
    )


def _message(response: httpx.Response) -> str:
    """Shopify's `errors`: a string, a list, or {field: [messages]}."""
    errors = _json(response).get("errors")
    if isinstance(errors, dict):
        text = "; ".join(
            f"{field}: {', '.join(map(str, problems if isinstance(problems, list) else [problems]))}"
            for field, problems in errors.items()
        )
    elif isinstance(errors, list):
        text = "; ".join(map(str, errors))
    elif errors:
        text = str(errors)
    else:
        text = response.reason_phrase or f"HTTP {response.status_code}"
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
