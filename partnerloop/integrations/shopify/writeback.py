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

from collections.abc import Mapping

import httpx

from partnerloop.integrations.writeback import (
    CUSTOMER_ID,
    MAX_MESSAGE_CHARS,
    PREFIX,
    UP_TO_DATE,
    excerpt,
    json_object,
    judge_failure,
    send,
)
from partnerloop.sync.worker import Outcome

VENDOR = "Shopify"
TAG_PREFIX = f"{PREFIX}:"
MAX_TAG_CHARS = 255
AUTH_HINT = "check the connector's access token and the app's write_customers scope"


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
    got = send(client, "GET", url, vendor=VENDOR, judge=judge, headers=headers)
    if isinstance(got, Outcome):
        return got
    current = _tags_of(got)
    if current is None:
        return Outcome(
            ok=False,
            error="Shopify's answer has no customer.tags",
            status_code=got.status_code,
            response=excerpt(got),
        )
    tags = merged(current, wanted)
    if set(tags) == set(current):
        return Outcome(ok=True, status_code=got.status_code, response=UP_TO_DATE)
    body = {"customer": {"id": int(customer_id), "tags": ", ".join(tags)}}
    put = send(client, "PUT", url, vendor=VENDOR, judge=judge, headers=headers, json=body)
    if isinstance(put, Outcome):
        return put
    return Outcome(ok=True, status_code=put.status_code, response=excerpt(put))


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
    customer = json_object(response).get("customer")
    if not isinstance(customer, dict):
        return None
    tags = customer.get("tags")
    if tags is None:
        return []
    return split_tags(tags) if isinstance(tags, str) else None


# --- talking to Shopify ------------------------------------------------------------------


def judge(response: httpx.Response) -> Outcome:
    """A failed answer as an Outcome (see the module docstring)."""
    return judge_failure(response, vendor=VENDOR, message=_message(response), auth_hint=AUTH_HINT)


def _message(response: httpx.Response) -> str:
    """Shopify's `errors`: a string, a list, or {field: [messages]}."""
    errors = json_object(response).get("errors")
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
