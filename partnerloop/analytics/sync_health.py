"""Whether partnerloop and the systems it talks to are in step: per outbox
destination (a connector), the sync latency, the backlog, the dead letters and
the uptime; per inbound source, the backlog and dead letters.

The figures mean what partnerloop.sync.service.destination_stats means by them
(latency: from the event to the remote side's acceptance, nearest-rank
percentiles over the deliveries of the last 24 hours; backlog: pending or
waiting for a retry; dead: dead-lettered), but every query here is bounded by
an index so a program with millions of delivered messages keeps a fast page:

- backlog and dead letters: `WHERE state IN (pending, retry, dead)` only, served
  by the (state, next_attempt_at) index, so delivered messages are never read;
  the destinations asked about are picked out afterwards;
- latency and uptime: per destination, the delivery attempts of the window,
  served by the (destination_kind, destination_id, started_at) index.

UPTIME of a destination over a window: the share of delivery attempts started
in the window that reached the remote system, i.e. that did not end without an
HTTP answer (connection refused, timeout, DNS) or with a 5xx. A 4xx or a 429
counts as up: the system answered. No attempts in the window: no figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from partnerloop.analytics.dashboard import rate_percent
from partnerloop.sync.models import DeliveryAttempt, InboundEvent, OutboxMessage
from partnerloop.sync.service import STATS_SAMPLE, STATS_WINDOW, percentile

WAITING = ("pending", "retry")
UPTIME_WINDOWS = (timedelta(hours=24), timedelta(days=7))
# A delivered attempt starts before the message is marked delivered, by at most
# a request's timeout (60 s at most in partnerloop); this margin keeps every
# attempt whose delivery falls in the latency window.
_ATTEMPT_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class Destination:
    kind: str  # OutboxMessage.destination_kind
    id: str  # OutboxMessage.destination_id


@dataclass(frozen=True)
class DestinationHealth:
    destination: Destination
    delivered: int  # in the last 24 hours
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    backlog: int
    dead: int
    attempts_24h: int
    uptime_24h: Decimal | None  # percent
    attempts_7d: int
    uptime_7d: Decimal | None


@dataclass(frozen=True)
class InboundHealth:
    source: str
    backlog: int
    dead: int


def _down() -> object:
    # No HTTP answer, or a server error, and not delivered after all (a deliverer
    # without HTTP, such as e-mail, reports no status code when it succeeds).
    return and_(
        DeliveryAttempt.outcome != "delivered",
        or_(DeliveryAttempt.status_code.is_(None), DeliveryAttempt.status_code >= 500),
    )


def outbound(
    session: Session, destinations: Sequence[Destination], *, now: datetime
) -> list[DestinationHealth]:
    wanted = set(destinations)
    states: dict[tuple[str, str], dict[str, int]] = {}
    for kind, dest, state, number in session.execute(
        select(
            OutboxMessage.destination_kind,
            OutboxMessage.destination_id,
            OutboxMessage.state,
            func.count(),
        )
        .where(OutboxMessage.state.in_((*WAITING, "dead")))
        .group_by(OutboxMessage.destination_kind, OutboxMessage.destination_id, OutboxMessage.state)
    ):
        if Destination(kind, dest) in wanted:
            states.setdefault((kind, dest), {})[state] = int(number)
    return [
        _one(session, destination, states.get((destination.kind, destination.id), {}), now=now)
        for destination in destinations
    ]


def _one(
    session: Session, destination: Destination, states: dict[str, int], *, now: datetime
) -> DestinationHealth:
    mine = and_(
        DeliveryAttempt.destination_kind == destination.kind,
        DeliveryAttempt.destination_id == destination.id,
    )
    since = now - STATS_WINDOW
    latencies = sorted(
        max((delivered - (occurred or created)).total_seconds() * 1000, 0.0)
        for delivered, occurred, created in session.execute(
            select(
                func.coalesce(OutboxMessage.delivered_at, OutboxMessage.created_at),
                OutboxMessage.occurred_at,
                OutboxMessage.created_at,
            )
            .select_from(DeliveryAttempt)
            .join(OutboxMessage, OutboxMessage.id == DeliveryAttempt.message_id)
            .where(
                mine,
                DeliveryAttempt.started_at >= since - _ATTEMPT_MARGIN,
                DeliveryAttempt.outcome == "delivered",
                OutboxMessage.delivered_at >= since,
            )
            .order_by(DeliveryAttempt.started_at.desc())
            .limit(STATS_SAMPLE)
        )
    )
    day, week = (now - window for window in UPTIME_WINDOWS)
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((_down(), 1), else_=0)), 0),  # type: ignore[arg-type]
            func.coalesce(func.sum(case((DeliveryAttempt.started_at >= day, 1), else_=0)), 0),
            func.coalesce(
                func.sum(case((and_(DeliveryAttempt.started_at >= day, _down()), 1), else_=0)),  # type: ignore[arg-type]
                0,
            ),
        ).where(mine, DeliveryAttempt.started_at >= week)
    ).one()
    attempts_7d, down_7d, attempts_24h, down_24h = (int(value) for value in row)
    return DestinationHealth(
        destination=destination,
        delivered=len(latencies),
        latency_p50_ms=round(percentile(latencies, 0.5)) if latencies else None,
        latency_p95_ms=round(percentile(latencies, 0.95)) if latencies else None,
        backlog=sum(states.get(state, 0) for state in WAITING),
        dead=states.get("dead", 0),
        attempts_24h=attempts_24h,
        uptime_24h=rate_percent(attempts_24h - down_24h, attempts_24h),
        attempts_7d=attempts_7d,
        uptime_7d=rate_percent(attempts_7d - down_7d, attempts_7d),
    )


def inbound(session: Session, sources: Sequence[str]) -> list[InboundHealth]:
    """Received events not yet processed, and dead ones, per source."""
    wanted = set(sources)
    states: dict[str, dict[str, int]] = {}
    for source, state, number in session.execute(
        select(InboundEvent.source, InboundEvent.state, func.count())
        .where(InboundEvent.state.in_((*WAITING, "dead")))
        .group_by(InboundEvent.source, InboundEvent.state)
    ):
        if source in wanted:
            states.setdefault(source, {})[state] = int(number)
    return [
        InboundHealth(
            source=source,
            backlog=sum(states.get(source, {}).get(state, 0) for state in WAITING),
            dead=states.get(source, {}).get("dead", 0),
        )
        for source in sources
    ]
