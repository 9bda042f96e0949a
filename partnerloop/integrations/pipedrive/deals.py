"""Pipedrive (API v2): shop orders become deals, found by the order id in a custom field.

Settings it reads (the connector's settings):
- `deals`: "on" records orders as deals. Read by partnerloop.integrations.outbound,
  which calls `upsert_deals` only then.
- `order_id_field`: required for deals. The 40-character key of a deal custom
  field of type Text that the merchant creates for partnerloop (e.g. "Shop order
  id"); Pipedrive shows it as the field's API key in its data fields settings, and
  as `key` in GET /v1/dealFields. It holds the order id: the deal's key, since
  Pipedrive has no upsert. Without it every deal is refused for good with a
  message saying so; `check_deal_settings` says it at set-up, for `validate`.
- `deal_pipeline` and `deal_stages` are not read: Pipedrive's deal `status`
  (open, won, lost) carries our stage, and a new deal goes where Pipedrive puts a
  deal created without pipeline or stage (the first stage of the default pipeline).

Pipedrive has no batch or upsert API for deals, so each deal takes its own calls:

1. `GET {base}/api/v2/deals/search?term=<order id>&fields=custom_fields&exact_match=true`
   (exact: the whole value, ignoring case). Answer `{"success": true, "data":
   {"items": [{"result_score": ..., "item": {"id": 42, "title": ..., "custom_fields":
   ["<matching value>"], ...}}]}}`. The search looks in every searchable custom
   field and its items list matching values, not which field held them.
2. Only when it found something: `GET {base}/api/v2/deals?ids=<ids>&custom_fields=
   <order_id_field>` (up to 100 ids): the candidates with just our field. The deal
   whose field holds exactly the order id is ours (the lowest id if there are
   several, so repeated deliveries pick the same one). This way a deal where some
   other field happens to hold the same text (a WooCommerce order "1234" and a
   numeric "employees" field of 1234) is never taken for the order's and overwritten.
3. Found: `PATCH {base}/api/v2/deals/{id}`; not found: `POST {base}/api/v2/deals`.
   Body: `title` (DealFacts.name), `value` (a JSON number, written from the exact
   decimal of the minor units and the currency's exponent: 1999 EUR -> 19.99,
   never through a float), `currency`, `status` (open | won | lost), `person_id`
   (the customer's person, when known; an update without one leaves the deal's
   person alone) and `custom_fields: {<order_id_field>: <order id>}`.

`base`, authentication (x-api-token, or Bearer for an OAuth token, an OAuth
app's renewed before expiry and once on a 401, the renewed credentials handed
back in `Verdict.credentials`; a refused renewal or an expired token without a
refresh_token dead-letters every deal with "reconnect Pipedrive: ...") and the
meaning of answers are the person upsert's (partnerloop.integrations.pipedrive.
connector: its `_Auth` and `judge` are reused): 2xx with success true done; 429
waits Retry-After (else x-ratelimit-reset, else 2 s) and pauses the connector;
401/403 retried with a clear error; 400/404/422 refuse the deal for good with
Pipedrive's error (`Verdict.rejected`, by order id) and the other deals go on;
5xx and timeouts retried; the first retryable failure ends the batch, and its
retry redoes the deals already sent, harmlessly (search first). A 404 on the
update means the deal was deleted or merged since the search: retried, and the
next try searches again.

A DealFacts with a stage other than open, won or lost, an unknown currency, or a
person id that is not a number is a bug in partnerloop: that deal is refused for
good with a message saying so, and no call is made for it.

Not atomic, like the persons: two deliveries of the same order racing each other
through search-then-create could create two deals; deliveries of one connector's
messages run in turn, so this needs two workers on the same order at once. Later
deliveries update the oldest one. Pipedrive's search index may also lag a
creation by a moment; the outbox retries a failed delivery after a while, well
past that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from partnerloop.core.errors import InvalidInput
from partnerloop.core.money import MoneyError, format_amount
from partnerloop.integrations.crm import DealFacts, Verdict
from partnerloop.integrations.pipedrive.connector import (
    CONNECTOR,
    MAX_RESPONSE_CHARS,
    MISSING_AUTH,
    _Auth,
    _Failed,
    _Stop,
)
from partnerloop.sync.worker import Outcome

DEALS_PATH = "/api/v2/deals"
SEARCH_PATH = "/api/v2/deals/search"
STATUSES = ("open", "won", "lost")  # DealFacts.stage is Pipedrive's deal status
MAX_IDS = 100  # GET /api/v2/deals takes up to 100 ids
# Pipedrive's custom field keys are 40-character hex hashes.
_FIELD_KEY = re.compile(r"^[0-9a-f]{40}$")
MISSING_FIELD = (
    "Pipedrive deals need settings.order_id_field: the 40-character key of a deal "
    "custom field of type Text that holds the shop's order id (create it in Pipedrive's "
    "data fields settings; its API key is shown there and as `key` in GET /v1/dealFields)"
)


def order_id_field(settings: Mapping[str, Any]) -> str:
    """The order id field's key from the settings; raises ValueError with a
    sentence for the merchant."""
    value = settings.get("order_id_field")
    key = value.strip() if isinstance(value, str) else ""
    if not key:
        raise ValueError(MISSING_FIELD)
    if not _FIELD_KEY.match(key):
        raise ValueError(
            f"settings.order_id_field {key!r} is not a Pipedrive field key: those are 40 "
            "characters 0-9 and a-f (the field's API key, not its name)"
        )
    return key


def check_deal_settings(settings: Mapping[str, Any]) -> None:
    """For the connector's `validate`: with `deals` on, `order_id_field` must be a
    field key. Raises InvalidInput."""
    if settings.get("deals") != "on":
        return
    try:
        order_id_field(settings)
    except ValueError as error:
        raise InvalidInput(
            str(error), code="invalid_setting", field="settings.order_id_field"
        ) from None


def deal_body(deal: DealFacts, field: str) -> dict[str, Any]:
    """The create/update body; raises ValueError for facts partnerloop should never
    produce. `value` is a Decimal: `_encode` writes it as an exact JSON number."""
    if deal.stage not in STATUSES:
        raise ValueError(
            f"order {deal.order_id} has deal stage {deal.stage!r}, not open, won or lost: "
            "a bug in partnerloop, not in the Pipedrive settings"
        )
    try:
        value = Decimal(format_amount(deal.amount_minor, deal.currency))
    except MoneyError as error:
        raise ValueError(f"order {deal.order_id}: {error.reason} (a bug in partnerloop)") from None
    body: dict[str, Any] = {
        "title": deal.name,
        "value": value,
        "currency": deal.currency,
        "status": deal.stage,
    }
    if deal.contact_remote_id is not None:
        if not deal.contact_remote_id.isdigit():
            raise ValueError(
                f"order {deal.order_id}: {deal.contact_remote_id!r} is not a Pipedrive person "
                "id (a bug in partnerloop)"
            )
        body["person_id"] = int(deal.contact_remote_id)
    body["custom_fields"] = {field: deal.order_id}
    return body


def upsert_deals(
    client: httpx.Client,
    *,
    settings: Mapping[str, Any],
    credentials: Mapping[str, str],
    deals: Sequence[DealFacts],
    now: datetime,
) -> Verdict:
    """Find each order's deal by the order id field, then update it or create one.
    `remote_ids` (the deals' ids) and `rejected` are keyed by order id. The same
    order twice in `deals`: the last one wins. Every deal refused: the outcome is
    a permanent failure. An OAuth token renewed on the way comes back in
    `credentials`."""
    try:
        field = order_id_field(settings)
    except ValueError as error:
        return Verdict(Outcome(ok=False, error=str(error), permanent=True))
    auth = _Auth(client, settings, credentials, now)
    if not auth.usable:
        return Verdict(Outcome(ok=False, error=MISSING_AUTH))
    unique: dict[str, DealFacts] = {}
    for deal in deals:
        unique.pop(deal.order_id, None)  # the last one wins, in its own place
        unique[deal.order_id] = deal
    if not unique:
        return Verdict(Outcome(ok=True, response="no deals: nothing to sync"))
    return auth.with_credentials(_upsert_all(auth, field, unique, now=now))


def _upsert_all(
    auth: _Auth, field: str, unique: Mapping[str, DealFacts], *, now: datetime
) -> Verdict:
    remote_ids: dict[str, str] = {}
    rejected: dict[str, str] = {}
    last: Verdict | None = None
    for order_id, deal in unique.items():
        try:
            body = deal_body(deal, field)
        except ValueError as error:
            rejected[order_id] = str(error)
            continue
        try:
            last, deal_id = _upsert_one(auth, field, order_id, body, now=now)
        except _Stop as stop:
            return stop.verdict  # no deal is to blame: the whole batch waits or dies
        except _Failed as failed:
            if not failed.verdict.outcome.permanent:
                return failed.verdict
            last = failed.verdict
            rejected[order_id] = failed.verdict.outcome.error or "refused"
            continue
        if deal_id is not None:
            remote_ids[order_id] = str(deal_id)
    if len(rejected) < len(unique):
        assert last is not None  # a deal not refused was sent
        return Verdict(
            Outcome(ok=True, status_code=last.outcome.status_code, response=last.outcome.response),
            remote_ids=remote_ids,
            rejected=rejected or None,
        )
    first = next(iter(rejected.values()))
    outcome = Outcome(
        ok=False,
        error=first if len(unique) == 1 else f"no deal was recorded: {first}",
        permanent=True,
        status_code=last.outcome.status_code if last else None,
        response=last.outcome.response if last else None,
    )
    return Verdict(outcome, remote_ids=remote_ids, rejected=rejected)


def _upsert_one(
    auth: _Auth,
    field: str,
    order_id: str,
    body: Mapping[str, Any],
    *,
    now: datetime,
) -> tuple[Verdict, int | None]:
    """The verdict and the deal's id (found or created); raises _Failed."""
    _, found = _call(
        auth,
        "GET",
        SEARCH_PATH,
        "deal search",
        params={"term": order_id, "fields": "custom_fields", "exact_match": "true"},
        now=now,
    )
    deal_id = None
    candidates = _candidates(found)
    if candidates:
        _, listed = _call(
            auth,
            "GET",
            DEALS_PATH,
            "deal lookup",
            params={"ids": ",".join(map(str, candidates)), "custom_fields": field},
            now=now,
        )
        deal_id = _ours(listed, field, order_id)
    if deal_id is None:
        verdict, created = _call(auth, "POST", DEALS_PATH, "deal create", body=body, now=now)
        data = created.get("data")
        new_id = data.get("id") if isinstance(data, dict) else None
        is_id = isinstance(new_id, int) and not isinstance(new_id, bool)
        return verdict, new_id if is_id else None
    verdict, _ = _call(
        auth,
        "PATCH",
        f"{DEALS_PATH}/{deal_id}",
        f"update of deal {deal_id}",
        body=body,
        now=now,
        gone_is_retry=True,
    )
    return verdict, deal_id


def _call(
    auth: _Auth,
    method: str,
    path: str,
    what: str,
    *,
    now: datetime,
    params: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    gone_is_retry: bool = False,
) -> tuple[Verdict, dict[str, Any]]:
    """One call: its verdict and JSON on success; raises _Failed otherwise (_Stop:
    the connector cannot authenticate). Like the person code's call, but the body
    is encoded here: `value` must be an exact JSON number, which json.dumps cannot
    write from a Decimal."""
    send: dict[str, str] = {}
    content = None
    if body is not None:
        content = _encode(body).encode()
        send["content-type"] = "application/json"
    response = auth.request(method, path, what, params=params, content=content, headers=send)
    if response.status_code == 404 and gone_is_retry:
        # Deleted or merged since the search: the next try searches again.
        excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
        gone = (
            f"Pipedrive {what} answered 404 (the deal was deleted or merged since the "
            "search; the next try searches again)"
        )
        raise _Failed(Verdict(Outcome(ok=False, error=gone, status_code=404, response=excerpt)))
    verdict, data = CONNECTOR.judge(response, what=what, now=now)
    if not verdict.outcome.ok:
        raise _Failed(verdict)
    return verdict, data


def _encode(value: Any) -> str:
    """JSON text with Decimals as exact numbers ("19.99", never a float's digits)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def _candidates(answer: Mapping[str, Any]) -> list[int]:
    """The ids of the deals a search found, lowest first (at most MAX_IDS)."""
    data = answer.get("data")
    items = data.get("items") if isinstance(data, dict) else None
    ids: set[int] = set()
    for entry in items if isinstance(items, list) else []:
        item = entry.get("item") if isinstance(entry, dict) else None
        deal_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(deal_id, int) and not isinstance(deal_id, bool):
            ids.add(deal_id)
    return sorted(ids)[:MAX_IDS]


def _ours(answer: Mapping[str, Any], field: str, order_id: str) -> int | None:
    """The lowest id among the listed deals whose order id field holds the order id."""
    deals = answer.get("data")
    matches: list[int] = []
    for deal in deals if isinstance(deals, list) else []:
        if not isinstance(deal, dict):
            continue
        deal_id = deal.get("id")
        custom = deal.get("custom_fields")
        value = custom.get(field) if isinstance(custom, dict) else None
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue  # empty, or not a Text field's value
        if isinstance(deal_id, bool) or not isinstance(deal_id, int):
            continue
        if str(value).strip() == order_id:
            matches.append(deal_id)
    return min(matches) if matches else None
