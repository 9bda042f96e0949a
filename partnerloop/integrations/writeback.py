"""The shop write-back capability: what the CRM knows about a customer (segment,
lifecycle stage, tags) written to the shop's own customer record.

Each shop that supports it (Shopify tags, WooCommerce customer meta, Magento
customer attributes) provides `write_customer`; partnerloop.integrations.outbound
drives it from the outbox, one customer at a time, always with the customer's
current CRM values, so a retried or late delivery writes the newest state.

Values are written under a `crm` namespace (Shopify tag `crm:<property>:<value>`,
WooCommerce meta key `crm_<property>`, Magento attribute `crm_<property>`), and
only that namespace is touched: the merchant's own tags and fields stay.

The HTTP plumbing the three shops share is here too: `send` (a request whose
failure becomes an Outcome), `judge_failure` (a failed answer as an Outcome:
the customer gone = permanent, 429 = wait Retry-After, PERMANENT_STATUSES =
permanent, anything else retried) and its helpers. Each shop module keeps only
what differs: how it reads the vendor's error message, what else counts as
"the customer is gone", the hint for a refused login, and its requests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import httpx

from partnerloop.core.http import retry_after_seconds
from partnerloop.integrations.shop import ConnectorConfig
from partnerloop.sync.worker import Outcome

PREFIX = "crm"
MAX_MESSAGE_CHARS = 300
MAX_RESPONSE_CHARS = 1000
PERMANENT_STATUSES = (400, 403, 404, 409, 422)
AUTH_STATUSES = (401, 403)
# The shops' customer ids are integers (Shopify's above 2^53: never through a float).
CUSTOMER_ID = re.compile(r"[0-9]{1,20}")
UP_TO_DATE = "already up to date"


class WritingShop(Protocol):
    kind: str

    def write_customer(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        customer_id: str,
        values: Mapping[str, str | None],
        now: datetime,
    ) -> Outcome: ...


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    vendor: str,
    judge: Callable[[httpx.Response], Outcome],
    **kwargs: Any,
) -> httpx.Response | Outcome:
    """The answer when it is 2xx, else what it means as an Outcome: timeouts and
    connection errors are retried, a failed answer is what `judge` makes of it."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        return Outcome(ok=False, error=f"{vendor} did not answer in time")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not reach {vendor}: {error}")
    if response.is_success:
        return response
    return judge(response)


def judge_failure(
    response: httpx.Response,
    *,
    vendor: str,
    message: str,
    gone: bool = False,
    auth_hint: str,
) -> Outcome:
    """A failed answer as an Outcome. `message` is the vendor's error message,
    `gone` the vendor's own sign (besides a 404) that the customer was deleted,
    `auth_hint` what to check when the shop refuses the credentials (401/403)."""
    status = response.status_code
    text = excerpt(response)
    if status == 404 or gone:
        return Outcome(
            ok=False,
            error=f"the customer no longer exists in {vendor} (deleted there): {message}",
            permanent=True,
            status_code=status,
            response=text,
        )
    if status == 429:
        return Outcome(
            ok=False,
            error=f"{vendor} rate limit: {message}",
            retry_after=retry_after_seconds(response) or 1.0,
            status_code=status,
            response=text,
        )
    hint = f" ({auth_hint})" if status in AUTH_STATUSES else ""
    return Outcome(
        ok=False,
        error=f"{vendor} answered {status}: {message}{hint}",
        permanent=status in PERMANENT_STATUSES,
        retry_after=retry_after_seconds(response),
        status_code=status,
        response=text,
    )


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; {} when it is empty, not JSON or not an object."""
    try:
        data = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def excerpt(response: httpx.Response) -> str | None:
    """The start of the answer's text, as kept with an Outcome; None when empty."""
    return response.text[:MAX_RESPONSE_CHARS] if response.content else None
