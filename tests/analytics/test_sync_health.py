"""Sync health per destination: the same latency, backlog and dead letters as
partnerloop.sync.service.destination_stats, read through bounded indexed queries,
and uptime as documented (attempts that reached the remote system)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from partnerloop.analytics.sync_health import Destination, inbound, outbound
from partnerloop.core.clock import utcnow
from partnerloop.core.ids import new_id
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.sync.models import InboundEvent, OutboxMessage

WORKER = "health-test"


def _message(
    session: Session, runtime: Runtime, destination: Destination, *, age_seconds: float
) -> str:
    now = utcnow()
    key = new_id("outbox_message")
    sync.enqueue(
        session,
        runtime.cipher,
        destination_kind=destination.kind,
        destination_id=destination.id,
        topic="conversion.created",
        payload={},
        idempotency_key=key,
        program_id=None,
        now=now,
        occurred_at=now - timedelta(seconds=age_seconds),
    )
    message = session.scalars(
        select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
    ).one()
    # What a claim does, for this message only (claim() would lease every due job).
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id)
        .values(locked_by=WORKER, attempts=OutboxMessage.attempts + 1)
    )
    return message.id


def _attempt(
    session: Session,
    runtime: Runtime,
    message_id: str,
    *,
    status: int | None,
    ok: bool,
    ago: timedelta = timedelta(seconds=1),
    max_attempts: int = 10,
) -> None:
    now = utcnow()
    facts = sync.AttemptFacts(
        started_at=now - ago,
        duration_ms=20,
        status_code=status,
        error=None if ok else "failed",
        response=None,
    )
    if ok:
        sync.mark_done(session, OutboxMessage, message_id, worker_id=WORKER, now=now)
        sync.record_attempt(session, runtime.cipher, message_id, facts, outcome="delivered")
        return
    state = sync.mark_failed(
        session,
        OutboxMessage,
        message_id,
        worker_id=WORKER,
        error="failed",
        max_attempts=max_attempts,
        now=now,
    )
    sync.record_attempt(session, runtime.cipher, message_id, facts, outcome=state)


def test_latency_backlog_and_dead_letters_agree_with_destination_stats_and_uptime_counts(
    session: Session, runtime: Runtime
) -> None:
    destination = Destination("webhook", new_id("connector"))
    other = Destination("webhook", new_id("connector"))
    delivered_fast = _message(session, runtime, destination, age_seconds=3)
    _attempt(session, runtime, delivered_fast, status=200, ok=True)
    delivered_slow = _message(session, runtime, destination, age_seconds=10)
    _attempt(session, runtime, delivered_slow, status=202, ok=True)
    server_error = _message(session, runtime, destination, age_seconds=1)
    _attempt(session, runtime, server_error, status=503, ok=False)  # down, retry
    refused = _message(session, runtime, destination, age_seconds=1)
    _attempt(session, runtime, refused, status=None, ok=False, max_attempts=1)  # down, dead
    throttled = _message(session, runtime, destination, age_seconds=1)
    _attempt(session, runtime, throttled, status=429, ok=False)  # up: it answered; retry
    old = _message(session, runtime, destination, age_seconds=1)
    _attempt(session, runtime, old, status=500, ok=False, ago=timedelta(days=3))  # 7 days only
    unrelated = _message(session, runtime, other, age_seconds=1)
    _attempt(session, runtime, unrelated, status=None, ok=False, max_attempts=1)
    session.flush()

    [health] = outbound(session, [destination], now=utcnow())
    [reference] = sync.destination_stats(
        session, kinds=["webhook"], program_id=None, destination_id=destination.id, now=utcnow()
    )

    assert (health.delivered, health.latency_p50_ms, health.latency_p95_ms) == (
        reference.delivered,
        reference.latency_p50_ms,
        reference.latency_p95_ms,
    )
    assert (health.backlog, health.dead) == (reference.backlog, reference.dead)
    assert (health.delivered, health.backlog, health.dead) == (2, 3, 1)
    assert 3000 <= (health.latency_p50_ms or 0) <= 3500
    assert 10000 <= (health.latency_p95_ms or 0) <= 10500
    # 24 h: 5 attempts, 2 down (503, no answer); 7 days: 6 attempts, 3 down (and the 500).
    assert (health.attempts_24h, health.uptime_24h) == (5, Decimal("60.00"))
    assert (health.attempts_7d, health.uptime_7d) == (6, Decimal("50.00"))


def test_a_destination_without_attempts_has_no_uptime(session: Session) -> None:
    [health] = outbound(session, [Destination("hubspot", new_id("connector"))], now=utcnow())

    assert (health.delivered, health.latency_p95_ms, health.backlog, health.dead) == (0, None, 0, 0)
    assert (health.attempts_24h, health.uptime_24h, health.uptime_7d) == (0, None, None)


def test_inbound_backlog_and_dead_events_per_source(session: Session, runtime: Runtime) -> None:
    source = f"connector:{new_id('connector')}"
    ids = []
    for number in range(4):
        received = sync.receive(
            session,
            runtime.cipher,
            kind="shop",
            source=source,
            external_id=str(number),
            topic="orders/create",
            payload=b"{}",
            program_id=None,
            now=utcnow(),
        )
        ids.append(received.event.id)
    session.execute(update(InboundEvent).where(InboundEvent.id == ids[0]).values(state="processed"))
    session.execute(update(InboundEvent).where(InboundEvent.id == ids[1]).values(state="dead"))
    session.execute(update(InboundEvent).where(InboundEvent.id == ids[2]).values(state="retry"))

    [health] = inbound(session, [source])

    assert (health.backlog, health.dead) == (2, 1)
