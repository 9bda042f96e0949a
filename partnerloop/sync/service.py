"""The inbox and the outbox: durable hand-offs between processes and systems.

Writers call `receive` (something arrived) or `enqueue`/`publish` (something
must go out) inside their own transaction, so the record commits together with
the business rows or not at all. Workers claim due rows with a lease, process
them, and record the outcome; see worker.py.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table, and_, func, or_, select, tuple_, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from partnerloop.core.bulk import BulkInsert
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import insert_if_absent
from partnerloop.core.errors import Conflict, InvalidInput, NotFound
from partnerloop.core.ids import new_id
from partnerloop.sync.models import DeliveryAttempt, InboundEvent, OutboxMessage

INBOUND_STATES = ("pending", "retry", "processed", "rejected", "dead")
OUTBOX_STATES = ("pending", "retry", "delivered", "dead")
DUE_STATES = ("pending", "retry")

# Domain events go to one fan-out destination first; the fan-out job copies
# each event to every subscriber (webhook endpoints, CRMs) known at that time.
# Domains stay ignorant of who listens.
FANOUT_KIND = "fanout"
FANOUT_DESTINATION = "events"

PAYLOAD_FIELD = "sync.payload"
MAX_ERROR_CHARS = 2000
MAX_BACKOFF_SECONDS = 3600.0
MAX_RETRY_AFTER_SECONDS = 86400.0

Job = TypeVar("Job", InboundEvent, OutboxMessage)


@dataclass(frozen=True)
class Received:
    event: InboundEvent
    created: bool  # False: a redelivery of an event we already hold


def receive(
    session: Session,
    cipher: FieldCipher,
    *,
    kind: str,
    source: str,
    external_id: str,
    topic: str,
    payload: bytes,
    program_id: str | None,
    now: datetime,
    rejected_reason: str | None = None,
) -> Received:
    """Store an inbound event once per (source, external id); a duplicate is a no-op."""
    event_id, created = store_event(
        session,
        cipher,
        kind=kind,
        source=source,
        external_id=external_id,
        topic=topic,
        payload=payload,
        program_id=program_id,
        now=now,
        rejected_reason=rejected_reason,
    )
    return Received(event=session.get_one(InboundEvent, event_id), created=created)


@dataclass(frozen=True)
class NewEvent:
    kind: str
    source: str
    external_id: str
    topic: str
    payload: bytes
    program_id: str | None
    # The payload already encrypted (seal_payload), e.g. by a web server as the
    # request arrived, off its batch's critical path; else encrypted when stored.
    sealed: str | None = None


def seal_payload(cipher: FieldCipher, payload: bytes) -> str:
    """An inbox payload as stored: deflated and encrypted."""
    return cipher.encrypt(payload.decode("utf-8", "replace"), field=PAYLOAD_FIELD, deflate=True)


# The inbox insert of a webhook batch, on the driver (see core/bulk.py): one
# multi-row statement; RETURNING names the rows it stored, so a duplicate (its
# row already there, or earlier in the same batch) is told apart.
_INBOX_INSERT = BulkInsert(
    InboundEvent.__table__,  # type: ignore[arg-type]
    suffix="ON CONFLICT (source, external_id) DO NOTHING RETURNING id",
)


def store_events(
    session: Session, cipher: FieldCipher, events: Sequence[NewEvent], *, now: datetime
) -> list[tuple[str, bool]]:
    """Many inbound events in one statement (a webhook batch): (event id, created)
    per event, in order. Once per (source, external id), duplicates within the
    batch included: the first stores it, the others get its id."""
    if not events:
        return []
    ids = [new_id("inbound_event") for _ in events]
    rows = []
    for event_id, event in zip(ids, events, strict=True):
        values = {
            "id": event_id,
            "kind": event.kind,
            "source": event.source,
            "external_id": event.external_id,
            "topic": event.topic,
            "program_id": event.program_id,
            "payload_enc": event.sealed or seal_payload(cipher, event.payload),
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "received_at": now,
        }
        rows.append([values.get(column) for column in _INBOX_INSERT.columns])
    connection = session.connection()
    dialect = connection.dialect
    created: set[str] = set()
    for sql, params in _INBOX_INSERT.statements(dialect, _INBOX_INSERT.prepare(dialect, rows)):
        created.update(connection.exec_driver_sql(sql, params).scalars())
    keys = [(event.source, event.external_id) for event in events]
    missing = [key for event_id, key in zip(ids, keys, strict=True) if event_id not in created]
    first: dict[tuple[str, str], str] = {}
    if missing:
        found = session.execute(
            select(InboundEvent.source, InboundEvent.external_id, InboundEvent.id).where(
                tuple_(InboundEvent.source, InboundEvent.external_id).in_(missing)
            )
        )
        first = {(source, external): event_id for source, external, event_id in found}
    return [
        (event_id, True) if event_id in created else (first[key], False)
        for event_id, key in zip(ids, keys, strict=True)
    ]


def store_event(
    session: Session,
    cipher: FieldCipher,
    *,
    kind: str,
    source: str,
    external_id: str,
    topic: str,
    payload: bytes,
    program_id: str | None,
    now: datetime,
    rejected_reason: str | None = None,
) -> tuple[str, bool]:
    """`receive` without loading the row: (event id, created)."""
    event_id = new_id("inbound_event")
    created = insert_if_absent(
        session,
        InboundEvent.__table__,  # type: ignore[arg-type]
        {
            "id": event_id,
            "kind": kind,
            "source": source,
            "external_id": external_id,
            "topic": topic,
            "program_id": program_id,
            "payload_enc": cipher.encrypt(
                payload.decode("utf-8", "replace"), field=PAYLOAD_FIELD, deflate=True
            ),
            "state": "rejected" if rejected_reason else "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": rejected_reason,
            "received_at": now,
        },
        conflict_columns=("source", "external_id"),
    )
    if created:
        return event_id, True
    existing = session.scalars(
        select(InboundEvent.id).where(
            InboundEvent.source == source, InboundEvent.external_id == external_id
        )
    ).one()
    return existing, False


def enqueue(
    session: Session,
    cipher: FieldCipher,
    *,
    destination_kind: str,
    destination_id: str,
    topic: str,
    payload: dict[str, Any],
    idempotency_key: str,
    program_id: str | None,
    now: datetime,
    occurred_at: datetime | None = None,
) -> bool:
    """Queue a message once per (destination, idempotency key). True if new."""
    return insert_if_absent(
        session,
        OutboxMessage.__table__,  # type: ignore[arg-type]
        {
            "id": new_id("outbox_message"),
            "destination_kind": destination_kind,
            "destination_id": destination_id,
            "topic": topic,
            "idempotency_key": idempotency_key,
            "program_id": program_id,
            "payload_enc": cipher.encrypt(
                json.dumps(payload, sort_keys=True), field=PAYLOAD_FIELD, deflate=True
            ),
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "occurred_at": occurred_at or now,
        },
        conflict_columns=("destination_kind", "destination_id", "idempotency_key"),
    )


def publish(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    topic: str,
    data: dict[str, Any],
    key: str,
    now: datetime,
) -> None:
    """Announce a domain event (e.g. conversion.created). `key` makes it idempotent."""
    enqueue(
        session,
        cipher,
        destination_kind=FANOUT_KIND,
        destination_id=FANOUT_DESTINATION,
        topic=topic,
        payload={
            "type": topic,
            "program_id": program_id,
            "occurred_at": now.isoformat(),
            "data": data,
        },
        idempotency_key=f"{topic}:{key}",
        program_id=program_id,
        now=now,
    )


def read_payload(cipher: FieldCipher, job: InboundEvent | OutboxMessage) -> str:
    return cipher.decrypt(job.payload_enc, field=PAYLOAD_FIELD)


# --- claiming and outcomes (used by the worker) --------------------------------------------


def _due(model: type[Job], now: datetime) -> Any:
    return (
        model.state.in_(DUE_STATES)
        & (model.next_attempt_at <= now)
        & or_(model.locked_until.is_(None), model.locked_until < now)
    )


def any_due(session: Session, model: type[Job], *, now: datetime) -> bool:
    """Whether a claim would find anything (a read: takes no lock). Jobs left to the
    dead letter by a crashed worker are due too, so checking this first loses none."""
    return session.scalar(select(model.id).where(_due(model, now)).limit(1)) is not None


def claim(
    session: Session,
    model: type[Job],
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    now: datetime,
) -> list[str]:
    """Lease up to `limit` due jobs to this worker. The caller commits.

    A job whose lease ran out (its worker died) is due again: that is how a
    killed worker's job runs again. attempts counts claims, so a job that
    crashes its worker every time still reaches the dead-letter state.
    """
    due = _due(model, now)
    # SKIP LOCKED: many workers on PostgreSQL take disjoint batches without waiting
    # on each other. SQLite ignores it; its write lock serialises claims instead.
    ids = list(
        session.scalars(
            select(model.id)
            .where(due)
            .order_by(model.next_attempt_at, model.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(
                locked_by=worker_id,
                locked_until=now + timedelta(seconds=lease_seconds),
                attempts=model.attempts + 1,
            )
        )
    return ids


def load_claimed(session: Session, model: type[Job], job_id: str, *, worker_id: str) -> Job | None:
    """The job, if this worker still holds it (its lease may have been taken over)."""
    job = session.get(model, job_id, populate_existing=True)
    if job is None or job.locked_by != worker_id:
        return None
    return job


class LostLease(Exception):
    """Another worker took the job over; this worker's work must not commit."""


def _finish(
    session: Session, model: type[Job], job_id: str, *, worker_id: str, values: dict[str, Any]
) -> None:
    # A Core UPDATE of the table, not the ORM-enabled update(model), which also
    # looks for the row in the session to change it in memory (its evaluation
    # machinery per call). The columns written are expired on the loaded job, if
    # any, so a later read in this session sees them (and only they are reloaded).
    table: Table = model.__table__  # type: ignore[assignment]
    result = session.execute(
        update(table)
        .where(table.c.id == job_id, table.c.locked_by == worker_id)
        .values(locked_by=None, locked_until=None, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LostLease(job_id)
    _expire_written(session, model, job_id, values)


def _expire_written(
    session: Session, model: type[Job], job_id: str, values: dict[str, Any]
) -> None:
    loaded = session.identity_map.get(identity_key(model, job_id))
    if loaded is not None:
        session.expire(loaded, ["locked_by", "locked_until", *values])


def mark_done(
    session: Session, model: type[Job], job_id: str, *, worker_id: str, now: datetime
) -> None:
    if model is InboundEvent:
        values: dict[str, Any] = {"state": "processed", "handled_at": now, "last_error": None}
    else:
        values = {"state": "delivered", "delivered_at": now, "last_error": None}
    _finish(session, model, job_id, worker_id=worker_id, values=values)


def mark_delivered(
    session: Session, message_ids: Sequence[str], *, worker_id: str, now: datetime
) -> set[str]:
    """mark_done for several outbox messages in one statement (one each was the most
    frequent statement of recording a pass's outcomes): the ids it marked. One left
    out was taken over by another worker (LostLease for it alone)."""
    if not message_ids:
        return set()
    table: Table = OutboxMessage.__table__  # type: ignore[assignment]
    values: dict[str, Any] = {"state": "delivered", "delivered_at": now, "last_error": None}
    marked = set(
        session.execute(
            update(table)
            .where(table.c.id.in_(message_ids), table.c.locked_by == worker_id)
            .values(locked_by=None, locked_until=None, **values)
            .returning(table.c.id)
        ).scalars()
    )
    for message_id in marked:
        _expire_written(session, OutboxMessage, message_id, values)
    return marked


def mark_rejected(
    session: Session, job_id: str, *, worker_id: str, reason: str, now: datetime
) -> None:
    _finish(
        session,
        InboundEvent,
        job_id,
        worker_id=worker_id,
        values={"state": "rejected", "last_error": reason[:MAX_ERROR_CHARS], "handled_at": now},
    )


def defer(session: Session, job_id: str, *, worker_id: str, until: datetime, reason: str) -> None:
    """Put a claimed message back untried until `until`: its claim did not count as an
    attempt (a paused connector or a spent rate budget is no failure of the message)."""
    _finish(
        session,
        OutboxMessage,
        job_id,
        worker_id=worker_id,
        values={
            "next_attempt_at": until,
            "attempts": OutboxMessage.attempts - 1,
            "last_error": reason[:MAX_ERROR_CHARS],
        },
    )


@dataclass(frozen=True)
class AttemptFacts:
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response: str | None


MAX_RESPONSE_CHARS = 1000
RESPONSE_FIELD = "sync.response"


def record_attempt(
    session: Session,
    cipher: FieldCipher,
    message_id: str,
    facts: AttemptFacts,
    *,
    outcome: str,
    message: OutboxMessage | None = None,
) -> None:
    """Log one delivery try, in the transaction that records its outcome.

    `message`: the message as the worker loaded it while holding its lease, so it
    is not read again (a SELECT of the whole row, payload included, per attempt).
    Its attempt number is still the stored one: only a claim changes it, and the
    outcome's mark, made just before, proved that no other worker claimed it since.
    """
    if message is None:
        message = session.get_one(OutboxMessage, message_id)
    session.add(
        DeliveryAttempt(
            id=new_id("delivery_attempt"),
            message_id=message_id,
            destination_kind=message.destination_kind,
            destination_id=message.destination_id,
            attempt=message.attempts,
            started_at=facts.started_at,
            duration_ms=facts.duration_ms,
            status_code=facts.status_code,
            outcome=outcome,
            error=facts.error[:MAX_ERROR_CHARS] if facts.error else None,
            response_enc=cipher.encrypt(facts.response[:MAX_RESPONSE_CHARS], field=RESPONSE_FIELD)
            if facts.response
            else None,
        )
    )


def list_attempts(session: Session, message_id: str) -> list[DeliveryAttempt]:
    return list(
        session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == message_id)
            .order_by(DeliveryAttempt.started_at, DeliveryAttempt.id)
        )
    )


def read_response(cipher: FieldCipher, attempt: DeliveryAttempt) -> str | None:
    return (
        cipher.decrypt(attempt.response_enc, field=RESPONSE_FIELD) if attempt.response_enc else None
    )


def backoff_seconds(attempts: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff (2 s, 4 s, 8 s, ... capped at an hour) with equal jitter:
    half the delay is fixed, half random, so retries of many jobs that failed
    together (a CRM outage) spread out instead of stampeding back at once."""
    delay = min(MAX_BACKOFF_SECONDS, 2.0 * 2.0 ** max(0, attempts - 1))
    jitter: float = (rng or random).uniform(0, delay / 2)
    return delay / 2 + jitter


def retry_delay(retry_after: float | None, *, default: float) -> float:
    """A deliverer's retry_after as seconds a timedelta can hold: `default` when it
    gave none (None, or NaN), else clamped to 0..MAX_RETRY_AFTER_SECONDS (infinity
    included). A deliverer's bug must never make recording its outcome raise: the
    message would stay claimed and be re-claimed forever."""
    if retry_after is None or math.isnan(retry_after):
        return default
    return min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)


def mark_failed(
    session: Session,
    model: type[Job],
    job_id: str,
    *,
    worker_id: str,
    error: str,
    max_attempts: int,
    now: datetime,
    retry_after: float | None = None,
) -> str:
    """Schedule a retry, or dead-letter after the last attempt. Returns the new state."""
    job = session.get(model, job_id, populate_existing=True)
    if job is None:
        raise LostLease(job_id)
    if job.attempts >= max_attempts:
        state, next_at = "dead", now
    else:
        delay = retry_delay(retry_after, default=backoff_seconds(job.attempts))
        state, next_at = "retry", now + timedelta(seconds=delay)
    _finish(
        session,
        model,
        job_id,
        worker_id=worker_id,
        values={"state": state, "next_attempt_at": next_at, "last_error": error[:MAX_ERROR_CHARS]},
    )
    return state


def dead_letter_exhausted(
    session: Session, model: type[Job], *, max_attempts: int, now: datetime
) -> int:
    """Jobs whose every attempt ended with a dead worker (no error was ever recorded)."""
    result = session.execute(
        update(model)
        .where(
            model.state.in_(DUE_STATES),
            model.attempts >= max_attempts,
            model.locked_until < now,
        )
        .values(
            state="dead",
            locked_by=None,
            locked_until=None,
            last_error=f"gave up after {max_attempts} attempts; the last worker stopped mid-job",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- reading and replaying (the API's view) ----------------------------------------------


def list_jobs(
    session: Session,
    model: type[Job],
    *,
    program_id: str | None,
    state: str | None,
    after: str | None,
    limit: int,
    destination_kinds: Sequence[str] | None = None,
    destination_id: str | None = None,
) -> list[Job]:
    states = INBOUND_STATES if model is InboundEvent else OUTBOX_STATES
    query = select(model).order_by(model.id).limit(limit)
    if program_id is not None:
        query = query.where(model.program_id == program_id)
    if destination_kinds is not None:
        query = query.where(OutboxMessage.destination_kind.in_(destination_kinds))
    if destination_id is not None:
        query = query.where(OutboxMessage.destination_id == destination_id)
    if state is not None:
        if state not in states:
            raise InvalidInput(
                f"state must be one of {', '.join(states)}.", code="invalid_state", field="state"
            )
        query = query.where(model.state == state)
    if after is not None:
        query = query.where(model.id > after)
    return list(session.scalars(query))


def list_messages_newest(
    session: Session,
    *,
    program_id: str,
    destination_kinds: Sequence[str],
    destination_id: str | None = None,
    state: str | None = None,
    before: str | None = None,
    limit: int,
) -> list[OutboxMessage]:
    """A program's outbox messages to these destinations, newest first (ids sort by
    creation): the delivery log as staff read it, paged by `before`."""
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.program_id == program_id,
            OutboxMessage.destination_kind.in_(destination_kinds),
        )
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    if destination_id is not None:
        query = query.where(OutboxMessage.destination_id == destination_id)
    if state is not None:
        if state not in OUTBOX_STATES:
            raise InvalidInput(
                f"state must be one of {', '.join(OUTBOX_STATES)}.",
                code="invalid_state",
                field="state",
            )
        query = query.where(OutboxMessage.state == state)
    if before is not None:
        query = query.where(OutboxMessage.id < before)
    return list(session.scalars(query))


def get_or_raise(session: Session, model: type[Job], job_id: str, *, program_id: str | None) -> Job:
    job = session.get(model, job_id)
    if job is None or (program_id is not None and job.program_id != program_id):
        raise NotFound(f"No job {job_id}.", code="job_not_found")
    return job


def replay(
    session: Session, model: type[Job], job_id: str, *, program_id: str | None, now: datetime
) -> Job:
    """Put a dead or rejected job back in the queue with a fresh set of attempts."""
    job = get_or_raise(session, model, job_id, program_id=program_id)
    if job.state not in ("dead", "rejected"):
        raise Conflict(
            f"Only dead or rejected jobs can be replayed; this one is {job.state}.",
            code="not_replayable",
        )
    job.state = "pending"
    job.attempts = 0
    job.next_attempt_at = now
    job.locked_by = None
    job.locked_until = None
    return job


def counts(session: Session, model: type[Job], *, program_id: str | None) -> dict[str, int]:
    query = select(model.state, func.count()).group_by(model.state)
    if program_id is not None:
        query = query.where(model.program_id == program_id)
    return {state: int(number) for state, number in session.execute(query)}


# --- delivery statistics (R9: sync times) ---------------------------------------------------


@dataclass(frozen=True)
class DestinationStats:
    destination_kind: str
    destination_id: str
    delivered: int  # in the window
    latency_p50_ms: int | None  # from the event to the remote side's acceptance
    latency_p95_ms: int | None
    backlog: int  # pending or waiting for a retry, now
    dead: int  # dead-lettered, now


STATS_WINDOW = timedelta(hours=24)
STATS_SAMPLE = 10_000  # the newest deliveries a percentile is taken over


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (no interpolation)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def destination_stats(
    session: Session,
    *,
    kinds: Sequence[str],
    program_id: str | None,
    destination_id: str | None = None,
    now: datetime,
) -> list[DestinationStats]:
    """Per destination: latency percentiles over the last 24 hours, backlog, dead letters."""
    conditions: list[ColumnElement[bool]] = [OutboxMessage.destination_kind.in_(kinds)]
    if program_id is not None:
        conditions.append(OutboxMessage.program_id == program_id)
    if destination_id is not None:
        conditions.append(OutboxMessage.destination_id == destination_id)
    scope = and_(*conditions)
    counts_by: dict[tuple[str, str], dict[str, int]] = {}
    for kind, dest, state, number in session.execute(
        select(
            OutboxMessage.destination_kind,
            OutboxMessage.destination_id,
            OutboxMessage.state,
            func.count(),
        )
        .where(scope)
        .group_by(OutboxMessage.destination_kind, OutboxMessage.destination_id, OutboxMessage.state)
    ):
        counts_by.setdefault((kind, dest), {})[state] = int(number)
    latencies: dict[tuple[str, str], list[float]] = {}
    recent = session.execute(
        select(
            OutboxMessage.destination_kind,
            OutboxMessage.destination_id,
            OutboxMessage.occurred_at,
            OutboxMessage.created_at,
            OutboxMessage.delivered_at,
        )
        .where(
            scope,
            OutboxMessage.state == "delivered",
            OutboxMessage.delivered_at >= now - STATS_WINDOW,
        )
        .order_by(OutboxMessage.delivered_at.desc())
        .limit(STATS_SAMPLE)
    )
    for kind, dest, occurred, created, delivered in recent:
        assert delivered is not None
        millis = (delivered - (occurred or created)).total_seconds() * 1000
        latencies.setdefault((kind, dest), []).append(max(millis, 0.0))
    stats = []
    for key in sorted(set(counts_by) | set(latencies)):
        values = sorted(latencies.get(key, []))
        states = counts_by.get(key, {})
        stats.append(
            DestinationStats(
                destination_kind=key[0],
                destination_id=key[1],
                delivered=len(values),
                latency_p50_ms=round(percentile(values, 0.5)) if values else None,
                latency_p95_ms=round(percentile(values, 0.95)) if values else None,
                backlog=states.get("pending", 0) + states.get("retry", 0),
                dead=states.get("dead", 0),
            )
        )
    return stats
