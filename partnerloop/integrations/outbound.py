"""Outgoing connectors in the delivery engine: who subscribes to an event (the
fan-out asks `subscriber`), how a message is delivered (`make_deliverer`), and
what happens to an endpoint that keeps failing (disabled, with a notice).

The engine itself (claim, retry with backoff and Retry-After, dead-letter,
replay, one attempt row per try) is partnerloop.sync; this module only knows
connectors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.errors import Conflict
from partnerloop.integrations import connectors, mapping
from partnerloop.integrations.crm import CrmConnector
from partnerloop.integrations.mapping import Mapping
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import CRMS
from partnerloop.integrations.webhooks.connector import CONNECTOR as WEBHOOK
from partnerloop.orders import profiles
from partnerloop.orders.models import Conversion
from partnerloop.sync import service as sync
from partnerloop.sync.fanout import Destination
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Outcome, RemoteDeliverer

log = logging.getLogger("partnerloop.outbound")


# The events after which a customer's CRM record may have changed.
CUSTOMER_TOPICS = ("conversion.created", "conversion.updated")


def subscriber(session: Session, program_id: str, topic: str) -> Sequence[Destination]:
    """Every outgoing connector of the program that wants this event: webhook
    endpoints by their subscriptions, CRMs for changes of a customer. A disabled
    one is still queued (its messages are dead-lettered and replayable once it is
    enabled): an outage of the receiver loses nothing."""
    rows = session.scalars(
        select(Connector)
        .where(Connector.program_id == program_id, Connector.kind.in_((WEBHOOK.kind, *CRMS)))
        .order_by(Connector.id)
    )
    wanted = []
    for row in rows:
        if (row.kind == WEBHOOK.kind and WEBHOOK.wants(row.settings, topic)) or (
            row.kind in CRMS and topic in CUSTOMER_TOPICS
        ):
            wanted.append(Destination(row.kind, row.id))
    return wanted


def make_deliverer(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    *,
    client_factory: Callable[[], httpx.Client],
    disable_after: int,
    clock: Callable[[], datetime] = utcnow,
) -> RemoteDeliverer:
    client = client_factory()

    def deliver(message: OutboxMessage, payload: dict[str, object]) -> Outcome:
        with sessions() as session:
            connector = session.get(Connector, message.destination_id)
            if connector is None:
                return Outcome(ok=False, error="the webhook endpoint was deleted", permanent=True)
            if connector.status == "disabled":
                return Outcome(
                    ok=False,
                    error=f"the endpoint is disabled ({connector.disabled_reason}); enable it "
                    "and replay",
                    permanent=True,
                )
            url = str(connector.settings["url"])
            secrets = connectors.secrets_of(cipher, connector)
        outcome = WEBHOOK.deliver(client, url=url, secrets=secrets, payload=payload, now=clock())
        _count(sessions, cipher, message.destination_id, outcome, disable_after=disable_after)
        return outcome

    return deliver


def mapping_of(connector: Connector) -> Mapping:
    """The connector's own field mapping, else its kind's default."""
    if connector.mapping:
        return mapping.parse_mapping(connector.mapping)
    return mapping.default_mapping(connector.kind)


def make_crm_deliverer(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    crm: CrmConnector,
    *,
    client_factory: Callable[[], httpx.Client],
    clock: Callable[[], datetime] = utcnow,
) -> RemoteDeliverer:
    """Sends the customer behind an event, as they are now, to the CRM: the newest
    state wins whatever order messages are delivered in, and an upsert by the
    contact's key makes a repeated delivery harmless."""
    client = client_factory()

    def deliver(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        now = clock()
        with sessions() as session:
            connector = session.get(Connector, message.destination_id)
            if connector is None:
                return Outcome(ok=False, error="the CRM connector was deleted", permanent=True)
            if connector.paused_until is not None and connector.paused_until > now:
                wait = (connector.paused_until - now).total_seconds()
                return Outcome(
                    ok=False,
                    error=f"paused until {connector.paused_until.isoformat()}",
                    retry_after=wait,
                )
            data = payload.get("data") or {}
            conversion = session.get(Conversion, str(data.get("id", "")))
            if conversion is None or conversion.customer_id is None:
                return Outcome(ok=True, response="no customer on this order: nothing to sync")
            facts = profiles.customer_facts(session, cipher, conversion.customer_id)
            properties = mapping.apply_mapping(mapping_of(connector), facts)
            if not properties.get(crm.key_property):
                return Outcome(
                    ok=True,
                    response=f"the customer has no {crm.key_property}: nothing to key on",
                )
            config = connectors.config_of(session, cipher, connector)
        verdict = crm.upsert_contacts(
            client,
            settings=config.settings,
            credentials=config.credentials,
            contacts=[properties],
            now=now,
        )
        if verdict.pause_until is not None or verdict.credentials is not None:
            with transaction(sessions) as session:
                row = session.get(Connector, message.destination_id)
                if row is not None and verdict.pause_until is not None:
                    row.paused_until = verdict.pause_until
                if row is not None and verdict.credentials is not None:
                    connectors.save_credentials(cipher, row, verdict.credentials, now=now)
        return verdict.outcome

    return deliver


def _count(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    connector_id: str,
    outcome: Outcome,
    *,
    disable_after: int,
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
            disable(session, cipher, connector=connector, reason=reason, now=utcnow())


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
