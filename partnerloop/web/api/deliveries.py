"""Deliveries to outgoing connectors: every message, its attempts, replay, and
sync times per connector (R9)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import NotFound
from partnerloop.integrations.registry import DELIVERY_KINDS
from partnerloop.sync import service as sync
from partnerloop.sync.models import OutboxMessage
from partnerloop.web.api.common import ERRORS, audit
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep, wake_worker

router = APIRouter(tags=["deliveries"])


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None = Field(description="The remote answer; null when there was none.")
    outcome: str = Field(description="delivered, retry or dead.")
    error: str | None
    response: str | None = Field(description="The start of the remote answer (1000 characters).")


class DeliveryOut(BaseModel):
    id: str
    connector_id: str
    kind: str
    program_id: str | None
    topic: str
    state: str = Field(description="pending, retry, delivered or dead.")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    occurred_at: datetime | None = Field(description="When the event it carries happened.")
    delivered_at: datetime | None
    latency_ms: int | None = Field(description="From the event to the remote acceptance.")
    attempt_log: list[AttemptOut] | None = Field(
        default=None, description="Every attempt (on GET /deliveries/{id})."
    )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class ConnectorSyncStats(BaseModel):
    connector_id: str
    kind: str
    delivered_24h: int
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    backlog: int = Field(description="Messages waiting (pending or retry).")
    dead: int = Field(description="Dead-lettered messages (replayable).")


class SyncStats(BaseModel):
    items: list[ConnectorSyncStats]


def delivery_out(row: OutboxMessage) -> DeliveryOut:
    latency = None
    if row.delivered_at is not None:
        since = row.occurred_at or row.created_at
        latency = int((row.delivered_at - since).total_seconds() * 1000)
    return DeliveryOut(
        id=row.id,
        connector_id=row.destination_id,
        kind=row.destination_kind,
        program_id=row.program_id,
        topic=row.topic,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        occurred_at=row.occurred_at,
        delivered_at=row.delivered_at,
        latency_ms=latency,
    )


def _delivery(session: Session, message_id: str, program_id: str | None) -> OutboxMessage:
    row = sync.get_or_raise(session, OutboxMessage, message_id, program_id=program_id)
    if row.destination_kind not in DELIVERY_KINDS:
        raise NotFound(f"No delivery {message_id}.", code="delivery_not_found")
    return row


@router.get("/deliveries", response_model=DeliveryList, responses=ERRORS)
def list_deliveries(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    connector_id: str | None = None,
    state: str | None = None,
) -> DeliveryList:
    """Messages to outgoing connectors, oldest first; filter by connector and state."""
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = sync.list_jobs(
            session,
            OutboxMessage,
            program_id=principal.visible_program(program_id),
            state=state,
            after=page.after,
            limit=page.limit,
            destination_kinds=list(DELIVERY_KINDS),
            destination_id=connector_id,
        )
        return DeliveryList(items=[delivery_out(r) for r in rows], **page.render(rows))


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut, responses=ERRORS)
def get_delivery(delivery_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> DeliveryOut:
    """One message with every attempt: status, duration, the start of the answer."""
    principal.require(Scope.read)
    with runtime.sessions() as session:
        row = _delivery(session, delivery_id, principal.program_id)
        out = delivery_out(row)
        out.attempt_log = [
            AttemptOut(
                attempt=a.attempt,
                started_at=a.started_at,
                duration_ms=a.duration_ms,
                status_code=a.status_code,
                outcome=a.outcome,
                error=a.error,
                response=sync.read_response(runtime.cipher, a),
            )
            for a in sync.list_attempts(session, row.id)
        ]
        return out


@router.post("/deliveries/{delivery_id}/replay", response_model=DeliveryOut, responses=ERRORS)
def replay_delivery(
    delivery_id: str, principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> DeliveryOut:
    """Queue a dead message again (e.g. once the endpoint is fixed and enabled)."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    with transaction(runtime.sessions) as session:
        row = _delivery(session, delivery_id, principal.program_id)
        message = sync.replay(
            session, OutboxMessage, row.id, program_id=principal.program_id, now=utcnow()
        )
        audit(
            session,
            principal,
            action="outbox_message.replayed",
            subject_kind="outbox_message",
            subject_id=message.id,
            program_id=message.program_id,
        )
        out = delivery_out(message)
    wake_worker(request)
    return out


@router.get("/sync/stats", response_model=SyncStats, responses=ERRORS)
def sync_stats(
    principal: PrincipalDep, runtime: RuntimeDep, program_id: str | None = None
) -> SyncStats:
    """Per outgoing connector: sync time from the event to the remote side's acceptance
    (p50 and p95 over the last 24 hours), backlog and dead letters."""
    principal.require(Scope.read)
    with runtime.sessions() as session:
        stats = sync.destination_stats(
            session,
            kinds=list(DELIVERY_KINDS),
            program_id=principal.visible_program(program_id),
            now=utcnow(),
        )
    return SyncStats(
        items=[
            ConnectorSyncStats(
                connector_id=s.destination_id,
                kind=s.destination_kind,
                delivered_24h=s.delivered,
                latency_p50_ms=s.latency_p50_ms,
                latency_p95_ms=s.latency_p95_ms,
                backlog=s.backlog,
                dead=s.dead,
            )
            for s in stats
        ]
    )
