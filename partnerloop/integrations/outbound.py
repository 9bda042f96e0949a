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

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.errors import Conflict
from partnerloop.integrations import connectors
from partnerloop.integrations.models import Connector
from partnerloop.integrations.webhooks.connector import CONNECTOR as WEBHOOK
from partnerloop.sync import service as sync
from partnerloop.sync.fanout import Destination
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Outcome, RemoteDeliverer

log = logging.getLogger("partnerloop.outbound")


def subscriber(session: Session, program_id: str, topic: str) -> Sequence[Destination]:
    """Every webhook endpoint of the program that wants this event. A disabled one is
    still queued (its messages are dead-lettered and replayable once it is enabled):
    an outage of the receiver loses nothing."""
    rows = session.scalars(
        select(Connector)
        .where(Connector.program_id == program_id, Connector.kind == WEBHOOK.kind)
        .order_by(Connector.id)
    )
    return [Destination(WEBHOOK.kind, row.id) for row in rows if WEBHOOK.wants(row.settings, topic)]


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
