"""Read models the dashboard and the weekly report share that span domains:
the sync health of a program's connectors (which outbox destinations and inbox
sources are theirs), affiliates' names, and the commissions awaiting review.

It sits with the integrations because it is the layer that knows every
connector kind (partnerloop.integrations.registry) and may read every domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from partnerloop.affiliates.models import Affiliate
from partnerloop.affiliates.service import NAME_FIELD
from partnerloop.analytics import sync_health
from partnerloop.analytics.sync_health import Destination, DestinationHealth, InboundHealth
from partnerloop.commissions.models import Commission
from partnerloop.core.crypto import FieldCipher
from partnerloop.integrations.connectors import source_of
from partnerloop.integrations.crm_to_shop import DESTINATION_KIND as WRITE_BACK
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import OUTBOUND, WRITING_SHOPS

# A program has a handful of connectors; this bounds the page if one has many.
MAX_CONNECTORS = 200
# Bound parameters per IN list (SQLite allows 32,766 in one statement).
_NAMES_PER_QUERY = 500


@dataclass(frozen=True)
class ConnectorHealth:
    connector_id: str
    kind: str
    status: str  # active | disabled
    outbound: DestinationHealth | None  # what partnerloop sends it (events, write-backs)
    inbound: InboundHealth  # what it sent partnerloop, not processed yet

    @property
    def backlog(self) -> int:
        return self.inbound.backlog + (self.outbound.backlog if self.outbound else 0)

    @property
    def dead(self) -> int:
        return self.inbound.dead + (self.outbound.dead if self.outbound else 0)


def _destination(connector: Connector) -> Destination | None:
    if connector.kind in OUTBOUND:
        return Destination(connector.kind, connector.id)
    if connector.kind in WRITING_SHOPS:
        return Destination(WRITE_BACK, connector.id)
    return None


def sync_health_of(session: Session, *, program_id: str, now: datetime) -> list[ConnectorHealth]:
    connectors = list(
        session.scalars(
            select(Connector)
            .where(Connector.program_id == program_id)
            .order_by(Connector.created_at, Connector.id)
            .limit(MAX_CONNECTORS)
        )
    )
    destinations = [d for d in map(_destination, connectors) if d is not None]
    sent = {
        health.destination.id: health
        for health in sync_health.outbound(session, destinations, now=now)
    }
    received = {
        health.source: health
        for health in sync_health.inbound(session, [source_of(c.id) for c in connectors])
    }
    return [
        ConnectorHealth(
            connector_id=connector.id,
            kind=connector.kind,
            status=connector.status,
            outbound=sent.get(connector.id),
            inbound=received[source_of(connector.id)],
        )
        for connector in connectors
    ]


def affiliate_names(session: Session, cipher: FieldCipher, ids: Iterable[str]) -> dict[str, str]:
    """Decrypted names by affiliate id (one query per 500 ids: a page is one)."""
    wanted = sorted(set(ids))
    names: dict[str, str] = {}
    for start in range(0, len(wanted), _NAMES_PER_QUERY):
        chunk = wanted[start : start + _NAMES_PER_QUERY]
        for affiliate_id, name_enc in session.execute(
            select(Affiliate.id, Affiliate.name_enc).where(Affiliate.id.in_(chunk))
        ):
            names[affiliate_id] = cipher.decrypt(name_enc, field=NAME_FIELD)
    return names


def awaiting_review(session: Session, *, program_id: str) -> int:
    """Pending commissions: the ones staff can still approve or decline
    (served by the (program_id, state, hold_until) index)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Commission)
            .where(Commission.program_id == program_id, Commission.state == "pending")
        )
        or 0
    )
