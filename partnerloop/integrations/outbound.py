"""Outgoing connectors in the delivery engine: who subscribes to an event (the
fan-out asks `subscriber`), how a message is delivered (`make_deliverer` for
webhook endpoints, `make_crm_deliverer` for CRMs), and what happens to a
receiver that keeps failing (a webhook endpoint is disabled with a notice; a
CRM's circuit breaker opens for a cooldown).

The engine itself (claim, retry with backoff and Retry-After, dead-letter,
replay, one attempt row per try) is partnerloop.sync; this module only knows
connectors.
"""

from __future__ import annotations

import json
import logging
import secrets as random_secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import CursorResult, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.errors import Conflict
from partnerloop.core.ids import new_id
from partnerloop.integrations import conflicts, connectors, links, mapping
from partnerloop.integrations.crm import CrmConnector, DealFacts, Verdict
from partnerloop.integrations.mapping import Mapping as FieldMapping
from partnerloop.integrations.models import Connector, SyncDecision
from partnerloop.integrations.registry import CRMS
from partnerloop.integrations.webhooks.connector import CONNECTOR as WEBHOOK
from partnerloop.orders import profiles
from partnerloop.orders.models import Conversion
from partnerloop.sync import ratelimit
from partnerloop.sync import service as sync
from partnerloop.sync.fanout import Destination
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import (
    BatchDeliverer,
    Outcome,
    RemoteDeliverer,
    forget_for_pass,
    per_pass,
)

log = logging.getLogger("partnerloop.outbound")


# The circuit breaker: after this many retryable failures in a row (a 429 is not
# one: it carries its own wait) a CRM is left alone for a cooldown (doubling while it keeps failing), instead of every queued
# message hammering it; the first call after the cooldown tests it again.
BREAKER_THRESHOLD = 5
BREAKER_COOLDOWN_SECONDS = 30
BREAKER_MAX_SECONDS = 600

# The events after which a customer's CRM record may have changed.
CUSTOMER_TOPICS = ("conversion.created", "conversion.updated")


# Built once, one plain parameter per kind: an expanding IN of them was rendered
# into the SQL again on every call (about half a millisecond each, one per event).
_LISTENERS = (
    select(Connector.kind, Connector.id, Connector.settings)
    .where(
        Connector.program_id == bindparam("program_id"),
        or_(*(Connector.kind == kind for kind in (WEBHOOK.kind, *CRMS))),
    )
    .order_by(Connector.id)
)


def subscriber(session: Session, program_id: str, topic: str) -> Sequence[Destination]:
    """Every outgoing connector of the program that wants this event: webhook
    endpoints by their subscriptions, CRMs for changes of a customer. A disabled
    one is still queued (its messages are dead-lettered and replayable once it is
    enabled): an outage of the receiver loses nothing.

    The program's connectors are read once per pass of the worker over its claimed
    events (one read per event was the most frequent statement of the fan-out); an
    endpoint added or changed meanwhile is seen by the next pass."""
    listeners = per_pass(("listeners", program_id), lambda: _listeners(session, program_id))
    return [
        Destination(kind, connector_id)
        for kind, connector_id, settings in listeners
        if (kind == WEBHOOK.kind and WEBHOOK.wants(settings, topic))
        or (kind in CRMS and topic in CUSTOMER_TOPICS)
    ]


def _listeners(session: Session, program_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (kind, connector_id, dict(settings))
        for kind, connector_id, settings in session.execute(_LISTENERS, {"program_id": program_id})
    ]


def make_deliverer(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    *,
    client_factory: Callable[[], httpx.Client],
    disable_after: int,
    clock: Callable[[], datetime] = utcnow,
) -> RemoteDeliverer:
    client = client_factory()

    def endpoint(connector_id: str) -> _Endpoint | Outcome:
        with sessions() as session:
            connector = session.get(Connector, connector_id)
            if connector is None:
                return Outcome(ok=False, error="the webhook endpoint was deleted", permanent=True)
            if connector.status == "disabled":
                return Outcome(
                    ok=False,
                    error=f"the endpoint is disabled ({connector.disabled_reason}); enable it "
                    "and replay",
                    permanent=True,
                )
            return _Endpoint(
                url=str(connector.settings["url"]),
                secrets=connectors.secrets_of(cipher, connector),
                failing=connector.consecutive_failures > 0,
            )

    def deliver(message: OutboxMessage, payload: dict[str, object]) -> Outcome:
        key = (WEBHOOK.kind, message.destination_id)
        found = per_pass(key, lambda: endpoint(message.destination_id))
        if isinstance(found, Outcome):
            return found
        outcome = WEBHOOK.deliver(
            client, url=found.url, secrets=found.secrets, payload=payload, now=clock()
        )
        # A success of an endpoint that was not failing changes nothing: no write
        # transaction for the common case (it was one per delivery).
        if found.failing or not outcome.ok:
            _count(
                sessions,
                cipher,
                message.destination_id,
                outcome,
                disable_after=disable_after,
                now=clock(),
            )
            # Its failure count (or its status) changed: read it again for the next.
            forget_for_pass(key)
        return outcome

    return deliver


@dataclass(frozen=True)
class _Endpoint:
    """What delivering to a webhook endpoint needs of its connector."""

    url: str
    secrets: list[str]
    failing: bool  # failures in a row so far: a success resets the count


def mapping_of(connector: Connector) -> FieldMapping:
    """The connector's own field mapping, else its kind's default."""
    if connector.mapping:
        return mapping.parse_mapping(connector.mapping)
    return mapping.default_mapping(connector.kind)


def key_property_of(crm: CrmConnector, settings: Mapping[str, Any]) -> str:
    """The mapped field that identifies a contact; some CRMs let the merchant choose it
    (Salesforce's external id field)."""
    chooser = getattr(crm, "key_property_for", None)
    return str(chooser(settings)) if chooser is not None else crm.key_property


def make_crm_deliverer(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    crm: CrmConnector,
    *,
    client_factory: Callable[[], httpx.Client],
    clock: Callable[[], datetime] = utcnow,
) -> BatchDeliverer:
    """Sends the customers behind a batch of events, as they are now, to the CRM in
    one call: the newest state wins whatever order messages are delivered in, and
    an upsert by the contact's key makes a repeated delivery harmless. With
    conflict policies set (and a CRM we can read), the CRM's current values are
    read first, each field is decided by its policy, only the winners are
    written, and every decision goes to the sync log. A contact the CRM refuses
    for good dead-letters its own messages only, not the rest of the batch."""
    client = client_factory()
    limit = getattr(crm, "rate_limit", None)  # (calls a second, burst) the vendor publishes

    def _budget(connector_id: str, now: datetime) -> float:
        return 0.0 if limit is None else take_budget(sessions, connector_id, limit, now)

    def deliver(batch: Sequence[tuple[OutboxMessage, dict[str, Any]]]) -> list[Outcome]:
        now = clock()
        connector_id = batch[0][0].destination_id  # the worker batches per destination
        customers: list[str | None] = []
        with sessions() as session:
            connector = session.get(Connector, connector_id)
            if connector is None:
                gone = Outcome(ok=False, error="the CRM connector was deleted", permanent=True)
                return [gone] * len(batch)
            if connector.paused_until is not None and connector.paused_until > now:
                paused = Outcome(
                    ok=False,
                    error=f"paused until {connector.paused_until.isoformat()}",
                    retry_after=(connector.paused_until - now).total_seconds(),
                    deferred=True,
                )
                return [paused] * len(batch)
            for _, payload in batch:
                data = payload.get("data") or {}
                conversion = session.get(Conversion, str(data.get("id", "")))
                customers.append(None if conversion is None else conversion.customer_id)
        first_message: dict[str, str] = {}
        for (message, _), customer_id in zip(batch, customers, strict=True):
            if customer_id is not None:
                first_message.setdefault(customer_id, message.id)
        # One delivery per contact at a time, and the contacts' state is read only
        # once their leases are held: two updates of one contact never overtake each other.
        token = random_secrets.token_hex(8)
        leased = links.lease_many(sessions, connector_id, list(first_message), token, now)
        held = [c for c in first_message if c in leased]
        results: dict[str, Outcome] = {}
        remote_ids: dict[str, str] = {}
        try:
            if held:
                wait = _budget(connector_id, now)
                if wait > 0:
                    spent = Outcome(
                        ok=False,
                        error=f"{crm.kind} rate budget spent: next call in {wait:.2f} s",
                        retry_after=wait,
                        deferred=True,
                    )
                    results = dict.fromkeys(held, spent)
                else:
                    results, remote_ids = _sync_contacts(connector_id, held, first_message, now)
            in_flight = Outcome(
                ok=False,
                error="another delivery of this contact is in flight",
                retry_after=links.RETRY_SECONDS,
                deferred=True,
            )
            nobody = Outcome(ok=True, response="no customer on this order: nothing to sync")
            outcomes = [nobody if c is None else results.get(c, in_flight) for c in customers]
            # The orders as deals, while the contacts' leases are still held.
            return _sync_deals(connector_id, batch, outcomes, remote_ids, now)
        finally:
            links.release_many(sessions, connector_id, token, remote_ids)

    def _sync_deals(
        connector_id: str,
        batch: Sequence[tuple[OutboxMessage, dict[str, Any]]],
        outcomes: list[Outcome],
        remote_ids: Mapping[str, str],
        now: datetime,
    ) -> list[Outcome]:
        """With the connector's `deals` setting on, each order whose contact went
        through is upserted as a deal (by its order id), associated to the contact."""
        upsert_deals = getattr(crm, "upsert_deals", None)
        if upsert_deals is None or not any(outcome.ok for outcome in outcomes):
            return outcomes
        deals: dict[str, DealFacts] = {}
        order_of: dict[int, str] = {}
        with sessions() as session:
            connector = session.get_one(Connector, connector_id)
            if connector.settings.get("deals") != "on":
                return outcomes
            config = connectors.config_of(session, cipher, connector)
            for index, ((_, payload), outcome) in enumerate(zip(batch, outcomes, strict=True)):
                data = payload.get("data") or {}
                facts = profiles.order_facts(session, cipher, str(data.get("id", "")))
                if not outcome.ok or facts is None:
                    continue
                customer_id = facts.pop("customer_id")
                contact = remote_ids.get(customer_id) if customer_id else None
                if customer_id and contact is None:
                    contact = links.remote_id(session, connector_id, customer_id)
                deals[facts["order_id"]] = DealFacts(**facts, contact_remote_id=contact)
                order_of[index] = facts["order_id"]
        if not deals:
            return outcomes
        verdict = upsert_deals(
            client,
            settings=config.settings,
            credentials=config.credentials,
            deals=list(deals.values()),
            now=now,
        )
        outcome = _settle_verdict(sessions, cipher, connector_id, verdict, now)
        rejected = verdict.rejected or {}
        for index, order_id in order_of.items():
            if order_id in rejected:
                outcomes[index] = Outcome(
                    ok=False,
                    error=f"{crm.kind} refused the deal of order {order_id}: {rejected[order_id]}",
                    permanent=True,
                    status_code=outcome.status_code,
                    response=outcome.response,
                )
            elif not outcome.ok:
                # The contact is sent again with the retry: harmless, it is an upsert.
                outcomes[index] = outcome
        return outcomes

    def _sync_contacts(
        connector_id: str,
        customer_ids: Sequence[str],
        first_message: Mapping[str, str],
        now: datetime,
    ) -> tuple[dict[str, Outcome], dict[str, str]]:
        results: dict[str, Outcome] = {}
        contacts: dict[str, dict[str, Any]] = {}
        ours_at: dict[str, datetime | None] = {}
        with sessions() as session:
            connector = session.get_one(Connector, connector_id)
            field_mapping = mapping_of(connector)
            config = connectors.config_of(session, cipher, connector)
            key_property = key_property_of(crm, config.settings)
            policies = conflicts.parse_policies(connector.conflicts) if connector.conflicts else {}
            for customer_id in customer_ids:
                facts = profiles.customer_facts(session, cipher, customer_id)
                properties = mapping.apply_mapping(field_mapping, facts)
                if not properties.get(key_property):
                    results[customer_id] = Outcome(
                        ok=True, response=f"the customer has no {key_property}: nothing to key on"
                    )
                    continue
                contacts[customer_id] = properties
                if policies:
                    ours_at[customer_id] = profiles.last_change(session, customer_id)
        decisions: dict[str, list[conflicts.Decision]] = {}
        read = getattr(crm, "read_contacts", None)
        credentials = config.credentials
        if policies and read is not None and contacts:
            found = read(
                client,
                settings=config.settings,
                credentials=credentials,
                keys=[str(p[key_property]) for p in contacts.values()],
                properties=sorted({f for p in contacts.values() for f in p}),
                now=now,
            )
            if isinstance(found, Verdict):
                outcome = _settle_verdict(sessions, cipher, connector_id, found, now)
                return {**results, **dict.fromkeys(contacts, outcome)}, {}
            if found.credentials is not None:
                # Renewed on the way: keep them, and upsert with them (a rotated
                # refresh token would not renew a second time).
                credentials = found.credentials
                with transaction(sessions) as session:
                    row = session.get_one(Connector, connector_id)
                    connectors.save_credentials(cipher, row, credentials, now=now)
            records = found.records
            stored = getattr(crm, "as_stored", lambda value: value)
            for customer_id, properties in list(contacts.items()):
                key = properties[key_property]
                record = records.get(str(key).lower())
                ours = {
                    f: conflicts.Side(stored(v), ours_at[customer_id], "partnerloop")
                    for f, v in properties.items()
                }
                theirs = (
                    {
                        f: conflicts.Side(record.values.get(f), record.updated_at, "crm")
                        for f in properties
                    }
                    if record is not None
                    else {}
                )
                decisions[customer_id] = conflicts.decide_all(policies, ours, theirs)
                winners = {d.field: d.new for d in decisions[customer_id] if d.write}
                winners[key_property] = key
                if record is not None and len(winners) == 1:
                    _log(sessions, cipher, connector_id=connector_id, customer_id=customer_id,
                         message_id=first_message[customer_id],
                         decisions=decisions[customer_id], now=now)  # fmt: skip
                    results[customer_id] = Outcome(
                        ok=True, response="the CRM already holds every winning value"
                    )
                    del contacts[customer_id]
                else:
                    contacts[customer_id] = winners
        if not contacts:
            return results, {}
        verdict = crm.upsert_contacts(
            client,
            settings=config.settings,
            credentials=credentials,
            contacts=list(contacts.values()),
            now=now,
        )
        outcome = _settle_verdict(sessions, cipher, connector_id, verdict, now)
        rejected = verdict.rejected or {}
        remote_ids: dict[str, str] = {}
        for customer_id, properties in contacts.items():
            key = str(properties[key_property]).lower()
            if key in rejected:
                results[customer_id] = Outcome(
                    ok=False,
                    error=f"{crm.kind} refused this contact: {rejected[key]}",
                    permanent=True,
                    status_code=outcome.status_code,
                    response=outcome.response,
                )
                continue
            results[customer_id] = outcome
            if not outcome.ok:
                continue
            if customer_id in decisions:
                _log(sessions, cipher, connector_id=connector_id, customer_id=customer_id,
                     message_id=first_message[customer_id],
                     decisions=decisions[customer_id], now=now)  # fmt: skip
            remote = (verdict.remote_ids or {}).get(key)
            if remote is not None:
                remote_ids[customer_id] = remote
        return results, remote_ids

    return deliver


BUDGET_TRIES = 5


def take_budget(
    sessions: sessionmaker[Session], connector_id: str, limit: tuple[float, int], now: datetime
) -> float:
    """One call's token from the connector's bucket, kept on its row so every
    worker process draws from the same budget: 0.0 when there was one, else the
    seconds until there is. A compare-and-set on the stored state: when another
    worker took a token meanwhile, count again."""
    rate, burst = limit
    for _ in range(BUDGET_TRIES):
        with transaction(sessions) as session:
            row = session.get(Connector, connector_id, populate_existing=True)
            if row is None:
                return 0.0
            before = (row.rate_tokens, row.rate_counted_at)
            stored = None if before[0] is None else ratelimit.BucketState(before[0], before[1])
            state, wait = ratelimit.take(stored, rate=rate, burst=burst, now=now)
            won: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(Connector)
                .where(
                    Connector.id == connector_id,
                    Connector.rate_tokens.is_(None)
                    if before[0] is None
                    else Connector.rate_tokens == before[0],
                    Connector.rate_counted_at.is_(None)
                    if before[1] is None
                    else Connector.rate_counted_at == before[1],
                )
                .values(rate_tokens=state.tokens, rate_counted_at=state.at)
            )
            if won.rowcount == 1:
                return wait
    return 1.0 / rate  # a busy budget: wait about one token's time


def _settle_verdict(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    connector_id: str,
    verdict: Verdict,
    now: datetime,
) -> Outcome:
    """Keep what a verdict taught us: a quota pause, refreshed credentials, and the
    circuit breaker's count (failures that say the CRM is unwell, in a row)."""
    outcome = verdict.outcome
    # A 429 is the CRM telling us to slow down, not that it is unwell: its own
    # Retry-After (or a quota pause) schedules the retry. Counted, five per-second
    # 429s in a row held every contact back for the breaker's whole cooldown.
    counts = (
        not outcome.ok
        and not outcome.permanent
        and verdict.pause_until is None
        and outcome.status_code != 429
    )
    with transaction(sessions) as session:
        row = session.get(Connector, connector_id)
        if row is None:
            return outcome
        if verdict.pause_until is not None:
            row.paused_until = verdict.pause_until
        if verdict.credentials is not None:
            connectors.save_credentials(cipher, row, verdict.credentials, now=now)
        if outcome.ok and row.consecutive_failures:
            row.consecutive_failures = 0
        elif counts:
            row.consecutive_failures += 1
            if row.consecutive_failures >= BREAKER_THRESHOLD:
                extra = row.consecutive_failures - BREAKER_THRESHOLD
                cooldown = min(BREAKER_COOLDOWN_SECONDS * 2**extra, BREAKER_MAX_SECONDS)
                row.paused_until = now + timedelta(seconds=cooldown)
                log.warning(
                    "%s connector %s: %d failures in a row, calls paused for %d s",
                    row.kind,
                    row.id,
                    row.consecutive_failures,
                    cooldown,
                )
    return outcome


LOG_FIELD = "sync_log.value"


def _log(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    *,
    connector_id: str,
    customer_id: str,
    message_id: str,
    decisions: Sequence[conflicts.Decision],
    now: datetime,
) -> None:
    def sealed(value: Any) -> str | None:
        if value is None:
            return None
        return cipher.encrypt(json.dumps(value, default=str), field=LOG_FIELD)

    with transaction(sessions) as session:
        for decision in decisions:
            session.add(
                SyncDecision(
                    id=new_id("sync_decision"),
                    connector_id=connector_id,
                    customer_id=customer_id,
                    message_id=message_id,
                    field=decision.field,
                    old_enc=sealed(decision.old),
                    new_enc=sealed(decision.new),
                    written=decision.write,
                    policy=decision.policy,
                    reason=decision.reason,
                    decided_at=now,
                )
            )


def read_log(cipher: FieldCipher, row: SyncDecision) -> tuple[Any, Any]:
    def opened(value: str | None) -> Any:
        return None if value is None else json.loads(cipher.decrypt(value, field=LOG_FIELD))

    return opened(row.old_enc), opened(row.new_enc)


def sync_log(
    session: Session, *, connector_id: str, customer_id: str | None, limit: int = 200
) -> list[SyncDecision]:
    query = (
        select(SyncDecision)
        .where(SyncDecision.connector_id == connector_id)
        .order_by(SyncDecision.decided_at.desc(), SyncDecision.id.desc())
        .limit(limit)
    )
    if customer_id is not None:
        query = query.where(SyncDecision.customer_id == customer_id)
    return list(session.scalars(query))


def _count(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    connector_id: str,
    outcome: Outcome,
    *,
    disable_after: int,
    now: datetime,
) -> None:
    """Failures in a row; at the limit (or on 410 Gone) the endpoint is disabled."""
    with transaction(sessions) as session:
        connector = session.get(Connector, connector_id)
        if connector is None or connector.status == "disabled":
            return
        if outcome.ok:
            connector.consecutive_failures = 0
            return
        connector.consecutive_failures += 1
        gone = outcome.status_code == 410
        if gone or connector.consecutive_failures >= disable_after:
            reason = (
                "the endpoint answered 410 Gone"
                if gone
                else f"{connector.consecutive_failures} failed deliveries in a row "
                f"(last: {outcome.error})"
            )
            disable(session, cipher, connector=connector, reason=reason, now=now)


def disable(
    session: Session, cipher: FieldCipher, *, connector: Connector, reason: str, now: datetime
) -> None:
    connector.status = "disabled"
    connector.disabled_at = now
    connector.disabled_reason = reason
    connector.updated_at = now
    log.warning("webhook endpoint %s disabled: %s", connector.id, reason)
    # The notice to the owner: an event (other endpoints and, later, e-mail hear of it).
    sync.publish(
        session,
        cipher,
        program_id=connector.program_id,
        topic="connector.disabled",
        data={"id": connector.id, "kind": connector.kind, "reason": reason},
        key=f"{connector.id}:{now.isoformat()}",
        now=now,
    )


def enable(session: Session, *, connector: Connector, now: datetime) -> Connector:
    if connector.kind != WEBHOOK.kind:
        raise Conflict(
            f"A {connector.kind} connector receives webhooks; there is nothing to enable.",
            code="not_an_outgoing_connector",
        )
    connector.status = "active"
    connector.consecutive_failures = 0
    connector.disabled_at = None
    connector.disabled_reason = None
    connector.updated_at = now
    return connector
