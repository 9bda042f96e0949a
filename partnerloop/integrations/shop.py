"""The shop-connector capability: what every shop integration provides.

A connector (one folder per vendor under partnerloop/integrations/) does three
things, none of which touches the database:
- `verify`: check a webhook request on its raw bytes and name its topic and
  the vendor's event id (the inbox's dedupe key);
- `normalise`: turn a stored payload into the one internal shape
  (partnerloop.orders.snapshots values, privacy requests, subscription ends);
- optionally `pull`: page through the vendor's REST API for backfill.
The framework (web/hooks.py, integrations/inbound.py, integrations/backfill.py)
does the storing and applying, the same way for every vendor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import httpx

from partnerloop.core import money
from partnerloop.core.clock import parse_datetime
from partnerloop.core.http import retry_after_seconds
from partnerloop.orders.snapshots import Cancellation, CustomerFacts, OrderSnapshot, RefundFacts
from partnerloop.privacy.service import PrivacyFacts


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    headers: Mapping[str, str]  # names lower-cased
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """A verified webhook, to be stored in the inbox."""

    topic: str
    event_id: str  # the vendor's id for this event: a redelivery carries the same one


@dataclass(frozen=True)
class Answer:
    """A request the vendor needs answered but that carries no event (a ping when
    a webhook is saved, a registration challenge): answered, nothing stored."""

    status: int
    body: str
    content_type: str = "text/plain"


class BadSignature(Exception):
    """The request is not from the shop (or not for this connector): 401, nothing stored."""


class Unusable(Exception):
    """A verified payload we cannot use as it is (malformed JSON, missing total,
    unknown currency or topic): kept as a rejected inbox event with this reason."""


@dataclass(frozen=True)
class SubscriptionEnded:
    subscription_id: str
    ended_at: datetime


@dataclass(frozen=True)
class Ignored:
    """A topic we accept but that changes nothing here (kept as processed, with why)."""

    reason: str


ShopEvent = (
    OrderSnapshot
    | RefundFacts
    | Cancellation
    | CustomerFacts
    | PrivacyFacts
    | SubscriptionEnded
    | Ignored
)


@dataclass(frozen=True)
class PulledItem:
    topic: str
    event_id: str  # dedupe key of the pulled state (order id + its updated_at)
    payload: bytes


@dataclass(frozen=True)
class PulledPage:
    items: list[PulledItem]
    cursor: dict[str, Any]  # where the next page starts; saved after the page is stored
    total: int | None = None  # how many items the whole pull has, when the API says
    done: bool = False


@dataclass(frozen=True)
class ConnectorConfig:
    """What a connector knows about one merchant's shop at run time."""

    connector_id: str
    program_currency: str
    settings: Mapping[str, Any]
    credentials: Mapping[str, str] = field(default_factory=dict)


class ShopConnector(Protocol):
    kind: str
    # Settings keys this kind accepts, with whether each is required.
    settings_fields: Mapping[str, bool]
    credential_fields: Sequence[str]

    def verify(
        self,
        request: WebhookRequest,
        *,
        secrets: Sequence[str],
        config: ConnectorConfig,
        now: datetime,
    ) -> Delivery | Answer: ...

    def normalise(
        self, topic: str, payload: bytes, *, config: ConnectorConfig
    ) -> list[ShopEvent]: ...


class PullingConnector(ShopConnector, Protocol):
    def pull(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        since: datetime,
        cursor: Mapping[str, Any] | None,
    ) -> Iterator[PulledPage]: ...


# --- helpers every connector uses --------------------------------------------------------


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def matches(expected: bytes | str, given: bytes | str) -> bool:
    """Constant-time comparison (a timing side channel must not leak the digest)."""
    a = expected.encode() if isinstance(expected, str) else expected
    b = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(a, b)


def parse_json(payload: bytes) -> Any:
    """JSON with exact integers (Shopify ids exceed 2^53) and exact decimals."""
    try:
        return json.loads(payload, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as error:
        raise Unusable(f"malformed JSON: {error}") from None


def parse_object(payload: bytes) -> dict[str, Any]:
    data = parse_json(payload)
    if not isinstance(data, dict):
        raise Unusable("the payload is not a JSON object")
    return data


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def require(data: Mapping[str, Any], key: str, *, what: str) -> Any:
    value = data.get(key)
    if value is None or value == "":
        raise Unusable(f"{what} has no {key}")
    return value


def currency_of(value: Any, *, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Unusable(f"{what} has no currency")
    code = value.upper()
    try:
        money.check_currency(code)
    except money.MoneyError:
        raise Unusable(f"{what} has an unknown currency {value!r}") from None
    return code


def minor(value: Any, currency: str, *, what: str) -> int:
    """A decimal amount as the shop sends it ("19.99", 19.99 or Decimal) -> minor units,
    exactly; more decimals than the currency has is an error, never a rounding."""
    if value is None or value == "":
        raise Unusable(f"{what} is missing")
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise Unusable(f"{what} is not an amount: {value!r}")
    text = str(value).strip()
    negative = text.startswith("-")
    try:
        amount = money.parse_amount(text.lstrip("-"), currency)
    except money.MoneyError as error:
        # "19.990000" from some shops: trailing zeros beyond the exponent are exact.
        try:
            exact = Decimal(text.lstrip("-"))
        except ArithmeticError:
            raise Unusable(f"{what}: {error.reason}") from None
        scaled = exact.scaleb(money.exponent(currency))
        if scaled != scaled.to_integral_value():
            raise Unusable(f"{what}: {error.reason}") from None
        amount = int(scaled)
    return -amount if negative else amount


def minor_or_zero(value: Any, currency: str, *, what: str) -> int:
    return 0 if value is None or value == "" else minor(value, currency, what=what)


def as_text(value: Any) -> str | None:
    """An id as text, exactly (ints stay ints: never through a float)."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        raise Unusable(f"an id is a fraction: {value}")
    return str(value)


def parse_time(value: Any, *, what: str) -> datetime | None:
    """ISO 8601 with or without offset (no offset = UTC, as in WooCommerce *_gmt)."""
    if value is None or value == "":
        return None
    try:
        return parse_datetime(str(value))
    except ValueError:
        raise Unusable(f"{what} is not a date-time: {value!r}") from None


# --- pulling ------------------------------------------------------------------------------

RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_PULL_RETRIES = 5
MAX_PULL_WAIT_SECONDS = 60.0


def get_with_retry(
    client: httpx.Client,
    url: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> httpx.Response:
    """GET that waits out rate limits (429 + Retry-After) and passing server errors,
    then raises for anything else that is not 2xx."""
    for attempt in range(MAX_PULL_RETRIES + 1):
        response = client.get(url, **kwargs)
        if response.status_code not in RETRY_STATUSES or attempt == MAX_PULL_RETRIES:
            response.raise_for_status()
            return response
        sleep(min(retry_after_seconds(response) or 2.0**attempt, MAX_PULL_WAIT_SECONDS))
    raise AssertionError("unreachable")
