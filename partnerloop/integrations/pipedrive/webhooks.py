"""Pipedrive webhooks v2: authenticate a delivery, turn a person event into a CrmChange.

Facts (../shared/fixtures/NOTES.md section 7; Pipedrive's "Guide for Webhooks v2"
and "Webhooks v2 migration guide"):
- No signature. The only protection is HTTP Basic auth that Pipedrive sends when
  the webhook was created with `http_auth_user` / `http_auth_password`. So the
  connector's secret is "user:password" (several during a change-over), and an
  endpoint without one is refused: unauthenticated requests must not change shop
  data.
- Body `{data, previous, meta}`; `meta.version` "2.0"; `meta.action` create |
  change | delete; `meta.entity` person, deal, ...; `meta.id` is "ID of the event
  triggering the webhook" (a UUID) and a retry re-sends the same event with only
  `meta.attempt` raised (1 - 4), so `meta.id` is the inbox key. Exception seen
  in Pipedrive's own examples: `user` events carry the user's id as `meta.id`
  and a unix `timestamp`; there (any meta.id that is not a UUID) the key is
  correlation_id + entity + entity_id + timestamp instead.
- `meta.timestamp` is ISO 8601 in real deliveries (the docs call it "10
  character timestamp"): both are read.

Person -> CrmChange (create and change; delete and other entities give nothing):
- remote_id `data.id`, occurred_at `meta.timestamp`, event_id as above;
- values: every top-level scalar of `data` as text (ints and decimals exactly as
  sent, booleans "true"/"false", null and "" as None, i.e. cleared); lists and
  objects (emails, phones, ...) are left out, except `label_ids` -> "1;2" in the
  order given (empty: None);
- `custom_fields` by their 40-character key. Webhook v2 sends each as an object
  with a `type`; the API v2 shapes (plain scalars, [ids], {value, currency}) are
  read too. The main value goes under the key, its other parts under
  "<key>_<part>" exactly as Pipedrive's API v1 named them (so a v1-era mapping
  still finds them):
    varchar/text/varchar_auto/double/phone/date: value
    monetary {value, currency}: key = value, key_currency = currency
    enum {id}: the option id; set {values: [{id}, ..]}: "13;14"
    people/org/user {id}: the id
    time {value, timezone_id}: key = value, key_timezone_id
    daterange/timerange {from, until}: key = from, key_until = until
    address {value, country, locality, ...}: key = value, key_country, ...
  Option ids stay ids: the labels need a call to the fields API, which is not
  this module's business.
- `data` is the person's whole current state, not just the changed fields.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from partnerloop.core.clock import parse_datetime
from partnerloop.integrations.crm import CrmChange
from partnerloop.integrations.shop import (
    BadSignature,
    Delivery,
    Unusable,
    WebhookRequest,
    body_hash,
    matches,
    parse_json,
    parse_object,
)

VERSION = "2.0"
PERSON = "person"
CHANGE_ACTIONS = ("create", "change")
LIST_SEPARATOR = ";"  # the multi-value separator HubSpot uses too
V1_REFUSED = "Pipedrive webhooks v1 are not supported; create the webhook with version 2.0"
MISSING_CREDENTIALS = (
    "Pipedrive webhooks carry no signature, so this endpoint needs HTTP Basic auth: set "
    'the connector\'s secret to "user:password" and the same user and password on the '
    "Pipedrive webhook (http_auth_user / http_auth_password)"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Where a custom field object keeps its main value, in order of preference.
_MAIN_PARTS = ("value", "id", "from", "values")


# --- authentication ------------------------------------------------------------------------


def verify(request: WebhookRequest, *, secrets: Sequence[str], now: datetime) -> Delivery:
    """Check the HTTP Basic credentials Pipedrive sends; name topic and inbox key.

    `secrets`: "user:password" strings (the current one and, while the webhook is
    being changed, the previous). `now` is unused (Pipedrive sends no timestamp to
    check) and kept for the same signature as the other vendors. Raises BadSignature.
    """
    del now
    credentials = [secret for secret in secrets if ":" in secret]
    if not credentials:
        raise BadSignature(MISSING_CREDENTIALS)
    header = (request.headers.get("authorization") or "").strip()
    if not header:
        raise BadSignature("missing HTTP Basic credentials (no Authorization header)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise BadSignature("the Authorization header is not HTTP Basic credentials")
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("wrong HTTP Basic credentials (not base64)") from None
    # A list, not a generator: every configured pair is compared (no early exit).
    if not any([matches(secret.encode(), given) for secret in credentials]):
        raise BadSignature("wrong HTTP Basic credentials")
    return _delivery(request.body)


def _delivery(body: bytes) -> Delivery:
    try:
        payload = parse_json(body)
    except Unusable:
        payload = None
    meta = payload.get("meta") if isinstance(payload, Mapping) else None
    if not isinstance(meta, Mapping):
        # Authenticated but not a webhook body: stored, and parse says why.
        return Delivery(topic="pipedrive.unknown", event_id=f"sha256:{body_hash(body)}")
    action = meta.get("action")
    entity = meta.get("entity") or meta.get("object")  # v1 says "object"
    topic = f"pipedrive.{action or 'unknown'}.{entity or 'unknown'}"
    if "current" in payload or str(meta.get("version")) != VERSION:
        # v1: meta.id is the object's id, not the event's; parse refuses it anyway.
        return Delivery(topic=topic[:64], event_id=f"sha256:{body_hash(body)}")
    return Delivery(topic=topic[:64], event_id=event_id(meta, body))


def event_id(meta: Mapping[str, Any], body: bytes) -> str:
    """The v2 event's inbox key: meta.id when it is the event's UUID, else the
    correlation id with entity, entity id and timestamp (all repeated on a retry)."""
    given = meta.get("id")
    if isinstance(given, str) and _UUID.fullmatch(given):
        return given
    parts = [meta.get(key) for key in ("correlation_id", "entity", "entity_id", "timestamp")]
    if parts[0] is None or parts[3] is None:
        return f"sha256:{body_hash(body)}"
    return ":".join("" if part is None else str(part) for part in parts)


# --- person events -> changes ------------------------------------------------------------


def parse(body: bytes) -> list[CrmChange]:
    """The person change in a Pipedrive webhook v2 body ([] for other entities and
    for deletions). Raises Unusable for v1 bodies, malformed JSON, a missing meta,
    a person without id or an event without timestamp."""
    payload = parse_object(body)
    meta = payload.get("meta")
    if not isinstance(meta, Mapping):
        raise Unusable("not a Pipedrive webhook: the body has no meta object")
    if "current" in payload or meta.get("v") is not None or str(meta.get("version")) == "1.0":
        raise Unusable(V1_REFUSED)
    if str(meta.get("version")) != VERSION:
        raise Unusable(f"unknown Pipedrive webhook version {meta.get('version')!r} (needs 2.0)")
    if meta.get("entity") != PERSON or meta.get("action") not in CHANGE_ACTIONS:
        return []
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise Unusable(f"a Pipedrive person {meta.get('action')} event without data")
    remote_id = _scalar_text(data.get("id"))
    if remote_id is None:
        raise Unusable("the Pipedrive person has no id")
    return [
        CrmChange(
            remote_id=remote_id,
            values=person_values(data),
            occurred_at=_timestamp(meta.get("timestamp")),
            event_id=event_id(meta, body),
        )
    ]


def person_values(data: Mapping[str, Any]) -> dict[str, str | None]:
    """A v2 person's fields as text (see the module docstring for the rules)."""
    values: dict[str, str | None] = {}
    for name, value in data.items():
        if name == "custom_fields":
            continue
        if name == "label_ids":
            values[name] = _joined(value, what="label_ids")
        elif _is_scalar(value):
            values[name] = _scalar_text(value)
        # Other lists and objects (emails, phones, ...) are not person properties
        # a CRM field mapping can name as one text.
    custom = data.get("custom_fields")
    if isinstance(custom, Mapping):
        for key, value in custom.items():
            values.update(custom_field_values(str(key), value))
    elif custom is not None:
        raise Unusable(f"the Pipedrive person's custom_fields is not an object: {custom!r}")
    return values


def custom_field_values(key: str, value: Any) -> dict[str, str | None]:
    """One custom field as {key: main value, key_<part>: other parts}."""
    if _is_scalar(value):
        return {key: _scalar_text(value)}
    if isinstance(value, list):
        return {key: _joined(value, what=f"custom field {key}")}
    if not isinstance(value, Mapping):
        raise Unusable(f"custom field {key} has an unreadable value: {value!r}")
    out: dict[str, str | None] = {}
    main = next((part for part in _MAIN_PARTS if part in value), None)
    if main is not None:
        if main == "values":
            out[key] = _joined(value["values"], what=f"custom field {key}")
        elif _is_scalar(value[main]):
            out[key] = _scalar_text(value[main])
        else:
            raise Unusable(f"custom field {key}: {main} is not a plain value: {value[main]!r}")
    for part, item in value.items():
        # `type` names the field's kind, not a value of it.
        if part in (main, "type") or not _is_scalar(item):
            continue
        out[f"{key}_{part}"] = _scalar_text(item)
    return out


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | Decimal | bool)


def _scalar_text(value: Any) -> str | None:
    """Text exactly as sent: ints and decimals unrounded, booleans "true"/"false",
    null and "" as None (cleared)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _joined(value: Any, *, what: str) -> str | None:
    """[1, 2] or [{"id": 1}, {"id": 2}] -> "1;2" in the order given; [] -> None."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise Unusable(f"{what} is not a list: {value!r}")
    parts: list[str] = []
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("id")
        text = _scalar_text(item) if _is_scalar(item) else None
        if text is None:
            raise Unusable(f"{what} holds an unreadable item: {value!r}")
        parts.append(text)
    return LIST_SEPARATOR.join(parts) or None


def _timestamp(value: Any) -> datetime:
    """meta.timestamp: ISO 8601 (real deliveries) or unix seconds (the docs' "10
    character timestamp"; 13 digits read as milliseconds)."""
    if value is None or value == "" or isinstance(value, bool):
        raise Unusable("the Pipedrive event has no meta.timestamp")
    text = str(value).strip()
    if text.isascii() and text.isdigit():
        milliseconds = int(text) if len(text) >= 13 else int(text) * 1000
        try:
            return _EPOCH + timedelta(milliseconds=milliseconds)
        except OverflowError:
            raise Unusable(f"meta.timestamp {value!r} is out of range") from None
    try:
        return parse_datetime(text)
    except ValueError:
        raise Unusable(f"meta.timestamp {value!r} is not a date-time") from None


class PipedriveWebhooks:
    """The CRM-webhooks capability (partnerloop.integrations.crm_to_shop.CrmWebhooks)."""

    def verify(
        self, request: WebhookRequest, *, secrets: Sequence[str], url: str, now: datetime
    ) -> Delivery:
        # Basic auth does not cover the URL: it is not needed here.
        return verify(request, secrets=secrets, now=now)

    def parse(self, body: bytes) -> list[CrmChange]:
        return parse(body)


WEBHOOKS = PipedriveWebhooks()
