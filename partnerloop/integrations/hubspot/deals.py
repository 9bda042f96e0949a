"""HubSpot (CRM v3): shop orders become deals, upserted by the order id.

Settings it reads (the connector's settings):
- `deals`: "on" records orders as deals. Read by partnerloop.integrations.outbound,
  which calls `upsert_deals` only then.
- `deal_pipeline`: the internal id of the pipeline the deals go in; default
  "default" (the pipeline every HubSpot account starts with).
- `deal_stages`: the internal stage id for each of our stages, as text
  "open=<id>,won=<id>,lost=<id>" (or a list of such pairs, or a mapping). A stage
  not given uses the default pipeline's id: open -> `appointmentscheduled` (its
  first stage), won -> `closedwon`, lost -> `closedlost`. With any other pipeline
  all three must be given: its stage ids are the account's own (Settings > Objects
  > Deals > Pipelines, or GET /crm/v3/pipelines/deals). `check_deal_settings`
  says what is wrong, for the connector's `validate`.

What the merchant creates in HubSpot first (Settings > Properties, Deal properties):
- `partnerloop_order_id`: single-line text with "Require unique values for this
  property" on. HubSpot's batch upsert keys on a property with unique values; with
  no such property every call is refused (400), dead-lettered with HubSpot's message.
- `partnerloop_affiliate`: single-line text (the referring affiliate's name).
And the shop's currencies must be among the account's currencies: HubSpot checks
`deal_currency_code` and refuses others (400 "... is not a part of the current
effective currency codes ...").

1. `POST {api_base}/crm/v3/objects/deals/batch/upsert`, up to 100 inputs a call:
   `{"inputs": [{"idProperty": "partnerloop_order_id", "id": <order id>,
   "objectWriteTraceId": <order id>, "properties": {...}}]}`. The same order
   again updates the same deal, so a retried delivery does no harm. Properties
   (all text, as HubSpot stores them): `dealname`, `amount` (decimal text made
   from the minor units and the currency's exponent: 1999 EUR -> "19.99", 500 JPY
   -> "500"; never a float), `deal_currency_code`, `closedate` (the order time,
   Unix milliseconds: the form HubSpot's APIs document for times), `pipeline`,
   `dealstage`, `partnerloop_order_id` and `partnerloop_affiliate` ("" without one:
   the attribution was removed). The answer's `results` are not in input order:
   each is matched to its order by the `objectWriteTraceId` HubSpot echoes, else
   by `properties.partnerloop_order_id`, else (one left) by elimination.
2. Then, for the deals with a contact (DealFacts.contact_remote_id) and only once
   the upsert gave their ids: `POST {api_base}/crm/v4/associations/deals/contacts/
   batch/associate/default` with `{"inputs": [{"from": {"id": <deal id>}, "to":
   {"id": <contact id>}}]}`: one call for the whole chunk, HubSpot's default
   (unlabelled) deal-to-contact association. An association is a pair that either
   exists or not (the one-pair form of this call is a PUT), so the retry of a
   delivery associating again is harmless.

Answers are judged as the contact upsert judges them (partnerloop.integrations.
hubspot.connector: its OAuth renewal, `judge` and helpers are reused, not copied):
200/201 accepted; 207 settled per input (an error's `context` names the inputs by
their objectWriteTraceId, i.e. the order id; an error naming none in a call of
several is retried whole); 429 SECONDLY waits (Retry-After, else 1 s), 429 DAILY
pauses the connector until the account's midnight; 401 and 5xx are retried;
400/403/404/409/422 refuse the deals of that call for good (`Verdict.rejected`,
by order id, with HubSpot's message), the other calls still count.

When the association fails after the upsert succeeded: a retryable failure
(429, 5xx, timeout, an unnamed 207 error) fails the delivery, and its retry redoes
the upsert (harmless) and the association. A refusal for good (400/404/..., or a
207 error naming the deal or the contact) puts those orders in `rejected` with
"deal <id> of order <n> was recorded, but HubSpot would not associate it with
contact <id>: ...": the deal exists, but the message is dead-lettered so the
merchant sees the missing link; replaying it after the fix (the usual cause is a
contact merged or deleted in HubSpot, and the replay's contact upsert brings its
current id) associates it.

A DealFacts with a stage other than open, won or lost, or a currency partnerloop
does not know, is a bug in partnerloop: that deal is refused for good with a
message saying so, and no call is made for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from partnerloop.core.clock import ensure_utc
from partnerloop.core.errors import InvalidInput
from partnerloop.core.money import MoneyError, format_amount
from partnerloop.integrations.crm import DealFacts, Verdict
from partnerloop.integrations.hubspot.connector import (
    CONNECTOR,
    MAX_RESPONSE_CHARS,
    _Auth,
    _base,
    _chunks,
    _json,
    _named_inputs,
    _Stop,
)
from partnerloop.sync.worker import Outcome

UPSERT_PATH = "/crm/v3/objects/deals/batch/upsert"
ASSOCIATE_PATH = "/crm/v4/associations/deals/contacts/batch/associate/default"
ORDER_ID_PROPERTY = "partnerloop_order_id"
AFFILIATE_PROPERTY = "partnerloop_affiliate"
DEFAULT_PIPELINE = "default"
# The internal stage ids of the pipeline every HubSpot account starts with.
DEFAULT_STAGES: Mapping[str, str] = {
    "open": "appointmentscheduled",
    "won": "closedwon",
    "lost": "closedlost",
}
STAGES = ("open", "won", "lost")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def pipeline_and_stages(settings: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The pipeline id and the stage id for each of open, won and lost, from the
    settings; raises ValueError with a sentence for the merchant."""
    pipeline = str(settings.get("deal_pipeline") or DEFAULT_PIPELINE).strip() or DEFAULT_PIPELINE
    given = _given_stages(settings.get("deal_stages"))
    missing = [stage for stage in STAGES if stage not in given]
    if pipeline != DEFAULT_PIPELINE and missing:
        raise ValueError(
            f"settings.deal_stages must give the stage ids of HubSpot pipeline {pipeline!r} "
            f"for {', '.join(missing)} (e.g. open=<id>,won=<id>,lost=<id>; HubSpot lists "
            "them under Settings > Objects > Deals > Pipelines): the default pipeline's "
            "stage ids do not exist in another pipeline."
        )
    return pipeline, {**DEFAULT_STAGES, **given}


def check_deal_settings(settings: Mapping[str, Any]) -> None:
    """For the connector's `validate`: raise InvalidInput when `deal_pipeline` and
    `deal_stages` do not go together."""
    try:
        pipeline_and_stages(settings)
    except ValueError as error:
        raise InvalidInput(
            str(error), code="invalid_setting", field="settings.deal_stages"
        ) from None


def _given_stages(raw: Any) -> dict[str, str]:
    """`deal_stages` as {stage: stage id}: a mapping, a list of "stage=id", or
    one comma-separated text of them."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    pairs: list[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, str | list | tuple):
        parts = raw.split(",") if isinstance(raw, str) else list(raw)
        pairs = []
        for part in parts:
            name, sep, value = str(part).partition("=")
            if not sep:
                raise ValueError(
                    f"settings.deal_stages: {str(part).strip()!r} is not stage=id "
                    "(e.g. open=appointmentscheduled,won=closedwon,lost=closedlost)."
                )
            pairs.append((name, value))
    else:
        raise ValueError("settings.deal_stages must be text like open=<id>,won=<id>,lost=<id>.")
    stages: dict[str, str] = {}
    for name, value in pairs:
        stage, stage_id = str(name).strip().lower(), str(value if value is not None else "")
        if stage not in STAGES:
            raise ValueError(f"settings.deal_stages: {stage!r} is not one of open, won, lost.")
        if not stage_id.strip():
            raise ValueError(f"settings.deal_stages: no stage id for {stage}.")
        stages[stage] = stage_id.strip()
    return stages


def deal_properties(deal: DealFacts, pipeline: str, stages: Mapping[str, str]) -> dict[str, str]:
    """The deal's HubSpot properties (all text); raises ValueError for facts
    partnerloop should never produce (an unknown stage or currency)."""
    if deal.stage not in STAGES:
        raise ValueError(
            f"order {deal.order_id} has deal stage {deal.stage!r}, not open, won or lost: "
            "a bug in partnerloop, not in the HubSpot settings"
        )
    try:
        amount = format_amount(deal.amount_minor, deal.currency)
    except MoneyError as error:
        raise ValueError(f"order {deal.order_id}: {error.reason} (a bug in partnerloop)") from None
    return {
        "dealname": deal.name,
        "amount": amount,
        "deal_currency_code": deal.currency,
        "closedate": str(_unix_ms(deal.ordered_at)),
        "pipeline": pipeline,
        "dealstage": stages[deal.stage],
        ORDER_ID_PROPERTY: deal.order_id,
        AFFILIATE_PROPERTY: deal.affiliate or "",
    }


def _unix_ms(moment: datetime) -> int:
    # Whole milliseconds by integer arithmetic (timestamp() would go through a float).
    return (ensure_utc(moment) - _EPOCH) // timedelta(milliseconds=1)


def upsert_deals(
    client: httpx.Client,
    *,
    settings: Mapping[str, Any],
    credentials: Mapping[str, str],
    deals: Sequence[DealFacts],
    now: datetime,
) -> Verdict:
    """Upsert the orders as deals (calls of up to 100), then associate each with
    its contact. `remote_ids` and `rejected` are keyed by order id. The same order
    twice in `deals`: the last one wins."""
    try:
        pipeline, stages = pipeline_and_stages(settings)
    except ValueError as error:
        return Verdict(Outcome(ok=False, error=str(error), permanent=True))
    unique: dict[str, DealFacts] = {}
    for deal in deals:
        unique.pop(deal.order_id, None)  # the last one wins, in its own place
        unique[deal.order_id] = deal
    if not unique:
        return Verdict(Outcome(ok=True, response="no deals: nothing to sync"))
    rejected: dict[str, str] = {}
    inputs: dict[str, dict[str, Any]] = {}
    for order_id, deal in unique.items():
        try:
            properties = deal_properties(deal, pipeline, stages)
        except ValueError as error:
            rejected[order_id] = str(error)
            continue
        inputs[order_id] = {
            "idProperty": ORDER_ID_PROPERTY,
            "id": order_id,
            # Echoed in the result and named in a 207's errors: ties both to the order.
            "objectWriteTraceId": order_id,
            "properties": properties,
        }
    auth = _Auth(client, _base(settings), credentials, now)
    remote_ids: dict[str, str] = {}
    last: Outcome | None = None
    whole_failures: list[Outcome] = []
    refusal: Outcome | None = None  # the last association HubSpot refused for good
    chunks = list(_chunks(list(inputs)))
    try:
        for chunk in chunks:
            body = {"inputs": [inputs[order_id] for order_id in chunk]}
            response = auth.post(UPSERT_PATH, body, what="deal upsert")
            if response.status_code not in (200, 201, 207):
                verdict = CONNECTOR.judge(response, settings=settings, now=now)
                if not verdict.outcome.permanent:
                    return auth.with_credentials(verdict)
                # Refused as a whole for good: these deals are dead, the other calls count.
                whole_failures.append(verdict.outcome)
                rejected.update(dict.fromkeys(chunk, str(verdict.outcome.error)))
                last = verdict.outcome
                continue
            settled = _settle_upsert(response, chunk)
            if isinstance(settled, Outcome):
                return auth.with_credentials(Verdict(settled))
            last, ids, refused = settled
            remote_ids.update(ids)
            rejected.update(refused)
            linked = [o for o in chunk if o not in refused and unique[o].contact_remote_id]
            unknown = [o for o in linked if o not in ids]
            if unknown:
                # Without the deal's id there is nothing to associate; HubSpot echoes
                # objectWriteTraceId, so this is a surprise: try the whole call again.
                nameless = (
                    f"HubSpot's answer did not say which deal is order {unknown[0]}'s, so it "
                    "cannot be associated with its contact; the batch is retried"
                )
                return auth.with_credentials(
                    Verdict(
                        Outcome(
                            ok=False,
                            error=nameless,
                            status_code=last.status_code,
                            response=last.response,
                        )
                    )
                )
            pairs = [(o, ids[o], str(unique[o].contact_remote_id)) for o in linked]
            if pairs:
                halt = _associate(auth, pairs, rejected, settings=settings, now=now)
                if halt is not None and not halt.outcome.permanent:
                    return auth.with_credentials(halt)
                if halt is not None:
                    refusal = halt.outcome  # for the attempt log, should nothing go through
    except _Stop as stop:
        return auth.with_credentials(stop.verdict)
    if len(rejected) < len(unique):
        assert last is not None  # a deal not refused was sent
        outcome = Outcome(ok=True, status_code=last.status_code, response=last.response)
        return auth.with_credentials(
            Verdict(outcome, remote_ids=remote_ids, rejected=rejected or None)
        )
    # Every deal refused: nothing was delivered.
    if len(chunks) == 1 and whole_failures and len(inputs) == len(unique):
        outcome = whole_failures[0]  # one call refused as a whole: its own answer
    else:
        first = next(iter(rejected.values()))
        answer = refusal or last
        outcome = Outcome(
            ok=False,
            error=first
            if len(unique) == 1
            else f"none of the {len(unique)} orders went through: {first}",
            permanent=True,
            status_code=answer.status_code if answer else None,
            response=answer.response if answer else None,
        )
    return auth.with_credentials(Verdict(outcome, remote_ids=remote_ids, rejected=rejected))


def _settle_upsert(
    response: httpx.Response, chunk: Sequence[str]
) -> Outcome | tuple[Outcome, dict[str, str], dict[str, str]]:
    """A 200/201/207 upsert answer: (outcome, deal ids, refused) by order id, or a
    retryable failure when a 207 error names none of several inputs."""
    status = response.status_code
    excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
    data = _json(response)
    # _named_inputs compares lower-cased: map back to the order ids as given.
    by_key = {order_id.lower(): order_id for order_id in chunk}
    refused: dict[str, str] = {}
    errors = data.get("errors") if status == 207 else None  # a 200's are a schema template
    for entry in errors if isinstance(errors, list) else []:
        error = entry if isinstance(entry, dict) else {}
        message = str(error.get("message") or "HubSpot refused the deal")
        named = {by_key[key] for key in _named_inputs(error.get("context"), set(by_key))}
        if not named and len(chunk) == 1:
            named = set(chunk)  # one input: the error can only be about it
        if not named:
            return Outcome(
                ok=False,
                error="HubSpot refused part of the deals without naming which "
                f"({message}); the whole batch is retried",
                status_code=status,
                response=excerpt,
            )
        for order_id in sorted(named):
            refused.setdefault(order_id, message)
    ids: dict[str, str] = {}
    nameless: list[str] = []
    for result in data.get("results") or []:
        if not isinstance(result, dict) or not result.get("id"):
            continue
        properties = result.get("properties")
        echoed = properties.get(ORDER_ID_PROPERTY) if isinstance(properties, dict) else None
        trace = result.get("objectWriteTraceId")
        if isinstance(trace, str) and trace in chunk:
            ids[trace] = str(result["id"])
        elif isinstance(echoed, str) and echoed in chunk:
            ids[echoed] = str(result["id"])
        else:
            nameless.append(str(result["id"]))
    # One deal left without an id and one result left without an order: they match.
    unmatched = [o for o in chunk if o not in ids and o not in refused]
    if len(unmatched) == 1 and len(nameless) == 1:
        ids[unmatched[0]] = nameless[0]
    return Outcome(ok=True, status_code=status, response=excerpt), ids, refused


def _associate(
    auth: _Auth,
    pairs: Sequence[tuple[str, str, str]],
    rejected: dict[str, str],
    *,
    settings: Mapping[str, Any],
    now: datetime,
) -> Verdict | None:
    """Associate (order id, deal id, contact id) pairs in one call; raises _Stop.
    Orders whose association HubSpot refuses for good go to `rejected`. Returns
    None when HubSpot took the call (a 207's refusals are in `rejected`), else
    its verdict: retryable (the delivery stops) or permanent (a whole call refused)."""
    body = {
        "inputs": [
            {"from": {"id": deal_id}, "to": {"id": contact_id}} for _, deal_id, contact_id in pairs
        ]
    }
    response = auth.post(ASSOCIATE_PATH, body, what="deal association")
    status = response.status_code
    if status in (200, 201):
        return None
    if status == 207:
        excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
        errors = _json(response).get("errors")
        ids = {key.lower() for _, deal_id, contact_id in pairs for key in (deal_id, contact_id)}
        for entry in errors if isinstance(errors, list) else []:
            error = entry if isinstance(entry, dict) else {}
            message = str(error.get("message") or "HubSpot refused the association")
            named = _named_inputs(error.get("context"), ids)
            affected = [p for p in pairs if p[1].lower() in named or p[2].lower() in named]
            if not affected and len(pairs) == 1:
                affected = list(pairs)  # one pair: the error can only be about it
            if not affected:
                error_text = (
                    "HubSpot refused part of the deal associations without naming which "
                    f"({message}); the batch is retried"
                )
                return Verdict(
                    Outcome(ok=False, error=error_text, status_code=status, response=excerpt)
                )
            for order_id, deal_id, contact_id in affected:
                rejected.setdefault(
                    order_id, _not_associated(order_id, deal_id, contact_id, message)
                )
        return None
    verdict = CONNECTOR.judge(response, settings=settings, now=now)
    if not verdict.outcome.permanent:
        return verdict  # the retry redoes the upsert (harmless) and the association
    for order_id, deal_id, contact_id in pairs:
        rejected.setdefault(
            order_id, _not_associated(order_id, deal_id, contact_id, str(verdict.outcome.error))
        )
    return verdict


def _not_associated(order_id: str, deal_id: str, contact_id: str, message: str) -> str:
    return (
        f"deal {deal_id} of order {order_id} was recorded, but HubSpot would not associate "
        f"it with contact {contact_id}: {message}"
    )
