"""The worker job for shop webhooks: a stored payload -> normalised -> applied.

Runs inside the worker's transaction with the job's "done" mark, so a crash
anywhere leaves nothing half-applied and the job runs again. A payload that
cannot be used becomes a `rejected` inbox event with the reason (quarantine);
after a fix it is replayed through the API and comes through here again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from partnerloop.core.crypto import FieldCipher
from partnerloop.core.errors import DomainError
from partnerloop.integrations import connectors
from partnerloop.integrations.shop import (
    ConnectorConfig,
    Ignored,
    ShopConnector,
    ShopEvent,
    SubscriptionEnded,
    Unusable,
)
from partnerloop.orders import snapshots
from partnerloop.orders.snapshots import Cancellation, CustomerFacts, OrderSnapshot, RefundFacts
from partnerloop.privacy import service as privacy
from partnerloop.privacy.service import PrivacyFacts
from partnerloop.sync.models import InboundEvent
from partnerloop.sync.worker import InboundHandler, RejectEvent, per_pass

KIND = connectors.INBOUND_KIND


def apply_events(
    session: Session,
    cipher: FieldCipher,
    *,
    config: ConnectorConfig,
    program_id: str,
    kind: str,
    events: list[ShopEvent],
    now: datetime,
) -> list[str]:
    """Apply normalised events in order; returns one outcome word per event."""
    outcomes = []
    for item in events:
        if isinstance(item, OrderSnapshot):
            applied = snapshots.apply_order(
                session,
                cipher,
                program_id=program_id,
                source=kind,
                connector_id=config.connector_id,
                snapshot=item,
                now=now,
            )
            outcomes.append(f"order {applied.outcome}")
        elif isinstance(item, RefundFacts):
            result = snapshots.apply_refund(
                session, cipher, program_id=program_id, refund=item, now=now
            )
            outcomes.append("refund " + ("none" if result is None else "recorded"))
        elif isinstance(item, Cancellation):
            cancelled = snapshots.apply_cancellation(
                session, cipher, program_id=program_id, cancellation=item, now=now
            )
            outcomes.append("order cancelled" if cancelled else "unknown order: nothing to cancel")
        elif isinstance(item, CustomerFacts):
            snapshots.apply_customer(session, cipher, program_id=program_id, customer=item, now=now)
            outcomes.append("customer")
        elif isinstance(item, PrivacyFacts):
            privacy.record_request(
                session,
                cipher,
                program_id=program_id,
                source=connectors.source_of(config.connector_id),
                facts=item,
                now=now,
            )
            outcomes.append(f"privacy {item.kind}")
        elif isinstance(item, SubscriptionEnded):
            snapshots.end_subscription(
                session,
                program_id=program_id,
                subscription_id=item.subscription_id,
                ended_at=item.ended_at,
                now=now,
            )
            outcomes.append("subscription ended")
        elif isinstance(item, Ignored):
            outcomes.append(f"ignored: {item.reason}")
    return outcomes


@dataclass(frozen=True)
class _Shop:
    """What processing a shop's events needs of its connector."""

    kind: str
    config: ConnectorConfig


def _shop_of(session: Session, cipher: FieldCipher, connector_id: str) -> _Shop | None:
    try:
        connector = connectors.get_or_raise(session, connector_id)
    except DomainError:
        return None
    return _Shop(connector.kind, connectors.config_of(session, cipher, connector))


def make_handler(cipher: FieldCipher, shops: Mapping[str, ShopConnector]) -> InboundHandler:
    def handle(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        connector_id = connectors.connector_id_of(event.source)
        if connector_id is None or event.program_id is None:
            raise RejectEvent(f"not a connector event: {event.source}")
        # Read once per pass of the worker over its claimed events (one read of the
        # connector per event before); a change made meanwhile counts from the next.
        found = per_pass((KIND, connector_id), lambda: _shop_of(session, cipher, connector_id))
        if found is None:
            raise RejectEvent(f"connector {connector_id} no longer exists")
        shop = shops.get(found.kind)
        if shop is None:
            raise RejectEvent(f"no shop connector of kind {found.kind!r} in this version")
        try:
            events = shop.normalise(event.topic, payload.encode(), config=found.config)
            apply_events(
                session,
                cipher,
                config=found.config,
                program_id=event.program_id,
                kind=found.kind,
                events=events,
                now=now,
            )
        except Unusable as error:
            raise RejectEvent(str(error)) from None
        except DomainError as error:
            # Well-formed but not applicable here (e.g. another currency than the
            # program's): kept with the reason for a human, replayable after a fix.
            raise RejectEvent(f"{error.code}: {error.detail}") from None

    return handle
