"""HubSpot webhooks: verify a delivery, turn its batch of events into CrmChanges.

Signatures (../shared/fixtures/NOTES.md section 5; HubSpot's "Validating requests"
page; hubspot-api-python `hubspot/utils/signature.py`), all keyed by the app's
client secret:
- v3: `X-HubSpot-Signature-v3 = base64(HMAC-SHA256(secret, method + uri + body +
  timestamp))`, `timestamp` being the `X-HubSpot-Request-Timestamp` header (ms)
  exactly as sent. A timestamp more than 5 minutes from now, either way, is
  refused (HubSpot's docs say "older than 5 minutes"; the future side guards
  against a clock-skewed replay window).
  `uri` is the full URL HubSpot called. The docs say to decode exactly these
  percent-encodings in it first: %3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 (
  %29 ) %2A * %2C , %3B ; (nothing else; `%20` stays encoded). HubSpot's own SDKs
  sign the URL verbatim instead, so the URL as given is tried too when decoding
  changes it; both are keyed by the secret, so accepting either weakens nothing.
- v2 (`X-HubSpot-Signature` with `X-HubSpot-Signature-Version: v2`):
  `hex(sha256(secret + method + uri + body))`, the URI exactly as called.
- v1 (same header, version v1): `hex(sha256(secret + body))`.
When the v3 header is present it alone decides: falling back to v1/v2 (which
carry no timestamp) would let a replayed request through.

The body is a JSON array of up to 100 events. HubSpot retries a failed batch
with `attemptNumber` changed, so the inbox key is derived from the events'
identities (portalId, subscriptionId, eventId, occurredAt: eventId alone is
documented as not guaranteed unique), never from the raw bytes.

Events -> CrmChange (see `parse`):
- `contact.propertyChange` (and the generic `object.propertyChange` with
  objectTypeId "0-1", HubSpot's id for contacts): {propertyName: propertyValue},
  "" meaning cleared (None);
- every other contact event (creation, deletion, merge, restore,
  associationChange, privacyDeletion, in either format): a CrmChange with empty
  values, so the caller sees that HubSpot spoke about the contact and when;
  it has nothing to write back;
- events about other objects (deal.*, company.*, ...): skipped.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from partnerloop.core.clock import ensure_utc
from partnerloop.integrations.crm import CrmChange
from partnerloop.integrations.shop import (
    BadSignature,
    Delivery,
    Unusable,
    WebhookRequest,
    body_hash,
    hmac_sha256,
    matches,
    parse_json,
)

TOPIC = "hubspot.webhook"
TOLERANCE_MS = 300_000  # 5 minutes, as HubSpot's docs and SDKs
CONTACT_OBJECT_TYPE_ID = "0-1"  # how generic object.* events name contacts
PROPERTY_CHANGE = "propertyChange"

_V3_HEADER = "x-hubspot-signature-v3"
_TIMESTAMP_HEADER = "x-hubspot-request-timestamp"
_LEGACY_HEADER = "x-hubspot-signature"
_VERSION_HEADER = "x-hubspot-signature-version"

# HubSpot's table of the only percent-encodings to decode in the v3 URI.
_V3_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- signatures ---------------------------------------------------------------------------


def v3_uri(url: str) -> str:
    """The URL as HubSpot's v3 signature covers it: only the table's encodings decoded,
    in one left-to-right pass (so `%253A` stays `%253A`). Hex digits in either case."""
    return _PERCENT.sub(lambda m: _V3_DECODED.get(m.group().upper(), m.group()), url)


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, method + uri + body + timestamp)), over UTF-8 bytes."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac_sha256(secret.encode(), message)).decode()


def signature_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    """hex(sha256(secret + method + uri + body))."""
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def signature_v1(secret: str, body: bytes) -> str:
    """hex(sha256(secret + body))."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def verify(request: WebhookRequest, *, secrets: Sequence[str], url: str, now: datetime) -> Delivery:
    """Check a HubSpot webhook request on its raw bytes; name its inbox key.

    `secrets`: the app's client secret (and, during a rotation, the previous one).
    `url`: the full public URL HubSpot called (scheme, host, path, query), as
    HubSpot saw it, not as a proxy rebuilt it. Raises BadSignature saying why.
    """
    keys = [secret for secret in secrets if secret]
    if not keys:
        raise BadSignature(
            "no HubSpot client secret is configured: set the connector's secret to the "
            "HubSpot app's client secret"
        )
    method = request.method.upper()
    headers = request.headers
    given_v3 = headers.get(_V3_HEADER)
    if given_v3:
        _verify_v3(request, given_v3.strip(), keys=keys, method=method, url=url, now=now)
    else:
        given = headers.get(_LEGACY_HEADER)
        if not given:
            raise BadSignature(
                "missing X-HubSpot-Signature-v3 header (and no X-HubSpot-Signature either)"
            )
        _verify_legacy(request, given.strip().lower(), keys=keys, method=method, url=url)
    return Delivery(topic=TOPIC, event_id=batch_id(request.body))


def _verify_v3(
    request: WebhookRequest,
    given: str,
    *,
    keys: Sequence[str],
    method: str,
    url: str,
    now: datetime,
) -> None:
    timestamp = (request.headers.get(_TIMESTAMP_HEADER) or "").strip()
    if not timestamp:
        raise BadSignature(
            "missing X-HubSpot-Request-Timestamp header (X-HubSpot-Signature-v3 needs it)"
        )
    if not timestamp.isascii() or not timestamp.isdigit():
        raise BadSignature(
            f"X-HubSpot-Request-Timestamp {timestamp!r} is not milliseconds since the epoch"
        )
    uris = [v3_uri(url)]
    if url != uris[0]:
        uris.append(url)  # HubSpot's SDKs sign the URL verbatim
    expected = [
        signature_v3(key, method, uri, request.body, timestamp) for key in keys for uri in uris
    ]
    # A list, not a generator: every candidate is compared (no early exit).
    if not any([matches(candidate, given) for candidate in expected]):
        raise BadSignature("the X-HubSpot-Signature-v3 signature does not match")
    skew_ms = int(timestamp) - _epoch_ms(now)
    if abs(skew_ms) > TOLERANCE_MS:
        direction = "old" if skew_ms < 0 else "in the future"
        raise BadSignature(
            f"the X-HubSpot-Request-Timestamp {timestamp} is {abs(skew_ms) / 1000:.3f} s "
            f"{direction}; more than {TOLERANCE_MS // 1000} s is refused (a replayed request?)"
        )


def _verify_legacy(
    request: WebhookRequest, given: str, *, keys: Sequence[str], method: str, url: str
) -> None:
    version = (request.headers.get(_VERSION_HEADER) or "").strip().lower()
    if not version:
        raise BadSignature(
            "missing X-HubSpot-Signature-Version header (X-HubSpot-Signature needs it)"
        )
    if version == "v1":
        expected = [signature_v1(key, request.body) for key in keys]
    elif version == "v2":
        expected = [signature_v2(key, method, url, request.body) for key in keys]
    else:
        raise BadSignature(f"unknown X-HubSpot-Signature-Version {version!r} (v1 or v2)")
    if not any([matches(candidate, given) for candidate in expected]):
        raise BadSignature(f"the X-HubSpot-Signature ({version}) signature does not match")


def _epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float on the way)."""
    return (ensure_utc(moment) - _EPOCH) // timedelta(milliseconds=1)


# --- the batch's inbox key ---------------------------------------------------------------


# What identifies one event (eventId alone is not guaranteed unique).
_IDENTITY = ("portalId", "subscriptionId", "eventId", "occurredAt")


def batch_id(body: bytes) -> str:
    """A key for the whole batch that a retry (same events, other attemptNumber) repeats:
    sha256 over the sorted (portalId, subscriptionId, eventId, occurredAt) of its events.
    A body that is not an array of objects gets the hash of its bytes (it is stored
    and then rejected by `parse` with the reason)."""
    try:
        events = parse_json(body)
    except Unusable:
        events = None
    if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
        return f"sha256:{body_hash(body)}"
    identities = sorted(":".join(_id_text(event.get(key)) for key in _IDENTITY) for event in events)
    digest = hashlib.sha256("\n".join(identities).encode()).hexdigest()
    return f"batch:{digest}"


def _id_text(value: Any) -> str:
    return "" if value is None else str(value)


# --- events -> changes -------------------------------------------------------------------


def parse(body: bytes) -> list[CrmChange]:
    """The contact changes in a HubSpot webhook body, in the batch's order.

    Raises Unusable for malformed JSON, a body that is not an array, or a contact
    event without objectId / eventId / occurredAt (or a propertyChange without
    propertyName); events about other objects are skipped unread.
    """
    events = parse_json(body)
    if not isinstance(events, list):
        raise Unusable("a HubSpot webhook body is a JSON array of events; this is not an array")
    changes: list[CrmChange] = []
    for position, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise Unusable(f"HubSpot event #{position} is not a JSON object")
        change = _change(event, position)
        if change is not None:
            changes.append(change)
    return changes


def _change(event: Mapping[str, Any], position: int) -> CrmChange | None:
    kind = _contact_event(event)
    if kind is None:
        return None  # another object's event: nothing of ours
    what = f"HubSpot event #{position} ({event.get('subscriptionType')})"
    remote_id = _exact_id(event.get("objectId"), what=what, key="objectId")
    if remote_id is None and kind == "merge":
        # Merge events name the surviving contact as primaryObjectId.
        remote_id = _exact_id(event.get("primaryObjectId"), what=what, key="primaryObjectId")
    if remote_id is None:
        raise Unusable(f"{what} has no objectId")
    event_id = _exact_id(event.get("eventId"), what=what, key="eventId")
    if event_id is None:
        raise Unusable(f"{what} has no eventId")
    values: dict[str, str | None] = {}
    if kind == PROPERTY_CHANGE:
        name = event.get("propertyName")
        if not isinstance(name, str) or not name:
            raise Unusable(f"{what} has no propertyName")
        values[name] = _text(event.get("propertyValue"))
    return CrmChange(
        remote_id=remote_id,
        values=values,
        occurred_at=_occurred_at(event.get("occurredAt"), what=what),
        event_id=event_id,
    )


def _contact_event(event: Mapping[str, Any]) -> str | None:
    """The action of a contact event ("propertyChange", "creation", ...), else None.
    Legacy `contact.<action>` or generic `object.<action>` with objectTypeId 0-1."""
    subscription = event.get("subscriptionType")
    if not isinstance(subscription, str):
        return None
    scope, _, action = subscription.partition(".")
    if scope == "contact" and action:
        return action
    if scope == "object" and action and str(event.get("objectTypeId")) == CONTACT_OBJECT_TYPE_ID:
        return action
    return None


def _exact_id(value: Any, *, what: str, key: str) -> str | None:
    """An id as exact text: ints stay ints (they may exceed 2^53), never via a float."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | Decimal):
        raise Unusable(f"{what}: {key} is not an integer id: {value!r}")
    return str(value)


def _text(value: Any) -> str | None:
    """A property value as HubSpot means it: text, "" (cleared) as None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _occurred_at(value: Any, *, what: str) -> datetime:
    """occurredAt (ms since the epoch) as an aware UTC datetime, exactly."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Unusable(f"{what} has no occurredAt (milliseconds since the epoch): {value!r}")
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise Unusable(f"{what}: occurredAt {value!r} is not milliseconds since the epoch")
    try:
        return _EPOCH + timedelta(milliseconds=int(text))
    except OverflowError:
        raise Unusable(f"{what}: occurredAt {value!r} is out of range") from None


class HubSpotWebhooks:
    """The CRM-webhooks capability (partnerloop.integrations.crm_to_shop.CrmWebhooks)."""

    def verify(
        self, request: WebhookRequest, *, secrets: Sequence[str], url: str, now: datetime
    ) -> Delivery:
        return verify(request, secrets=secrets, url=url, now=now)

    def parse(self, body: bytes) -> list[CrmChange]:
        return parse(body)


WEBHOOKS = HubSpotWebhooks()
