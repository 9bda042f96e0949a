"""The inbox and outbox, visible: what arrived, what is owed, what failed and why."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.sync import service as sync
from partnerloop.sync.models import InboundEvent, OutboxMessage
from partnerloop.web.api.common import ERRORS, audit
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep, wake_worker

router = APIRouter(tags=["inbox and outbox"])


class InboundEventOut(BaseModel):
    id: str
    kind: str
    source: str
    external_id: str
    topic: str
    program_id: str | None
    state: str = Field(description="pending, retry, processed, rejected or dead.")
    attempts: int
    next_attempt_at: datetime
    in_progress: bool
    last_error: str | None
    received_at: datetime
    handled_at: datetime | None


class OutboxMessageOut(BaseModel):
    id: str
    destination_kind: str
    destination_id: str
    topic: str
    program_id: str | None
    state: str = Field(description="pending, retry, delivered or dead.")
    attempts: int
    next_attempt_at: datetime
    in_progress: bool
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class InboundEventList(BaseModel):
    items: list[InboundEventOut]
    next_cursor: str | None


class OutboxMessageList(BaseModel):
    items: list[OutboxMessageOut]
    next_cursor: str | None


class QueueSummary(BaseModel):
    inbound: dict[str, int]
    outbox: dict[str, int]


def _in_progress(job: InboundEvent | OutboxMessage) -> bool:
    return job.locked_until is not None and job.locked_until > utcnow()


def inbound_out(row: InboundEvent) -> InboundEventOut:
    return InboundEventOut(
        **{
            name: getattr(row, name)
            for name in InboundEventOut.model_fields
            if name != "in_progress"
        },
        in_progress=_in_progress(row),
    )


def outbox_out(row: OutboxMessage) -> OutboxMessageOut:
    return OutboxMessageOut(
        **{
            name: getattr(row, name)
            for name in OutboxMessageOut.model_fields
            if name != "in_progress"
        },
        in_progress=_in_progress(row),
    )


@router.get("/jobs/summary", response_model=QueueSummary, responses=ERRORS)
def summary(principal: PrincipalDep, runtime: RuntimeDep) -> QueueSummary:
    """How many inbound events and outbox messages are in each state."""
    principal.require(Scope.read)
    with runtime.sessions() as session:
        return QueueSummary(
            inbound=sync.counts(session, InboundEvent, program_id=principal.program_id),
            outbox=sync.counts(session, OutboxMessage, program_id=principal.program_id),
        )


@router.get("/inbound-events", response_model=InboundEventList, responses=ERRORS)
def list_inbound(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    state: str | None = None,
) -> InboundEventList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = sync.list_jobs(
            session,
            InboundEvent,
            program_id=principal.visible_program(program_id),
            state=state,
            after=page.after,
            limit=page.limit,
        )
        return InboundEventList(items=[inbound_out(r) for r in rows], **page.render(rows))


@router.get("/inbound-events/{event_id}", response_model=InboundEventOut, responses=ERRORS)
def get_inbound(event_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> InboundEventOut:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        return inbound_out(
            sync.get_or_raise(session, InboundEvent, event_id, program_id=principal.program_id)
        )


@router.post("/inbound-events/{event_id}/replay", response_model=InboundEventOut, responses=ERRORS)
def replay_inbound(
    event_id: str, principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> InboundEventOut:
    """Queue a dead or rejected event again (after fixing what made it fail)."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    with transaction(runtime.sessions) as session:
        event = sync.replay(
            session, InboundEvent, event_id, program_id=principal.program_id, now=utcnow()
        )
        audit(
            session,
            principal,
            action="inbound_event.replayed",
            subject_kind="inbound_event",
            subject_id=event.id,
            program_id=event.program_id,
        )
        out = inbound_out(event)
    wake_worker(request)
    return out


@router.get("/outbox", response_model=OutboxMessageList, responses=ERRORS)
def list_outbox(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    state: str | None = None,
) -> OutboxMessageList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = sync.list_jobs(
            session,
            OutboxMessage,
            program_id=principal.visible_program(program_id),
            state=state,
            after=page.after,
            limit=page.limit,
        )
        return OutboxMessageList(items=[outbox_out(r) for r in rows], **page.render(rows))


@router.post("/outbox/{message_id}/replay", response_model=OutboxMessageOut, responses=ERRORS)
def replay_outbox(
    message_id: str, principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> OutboxMessageOut:
    """Queue a dead message again (e.g. once the remote system is back)."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    with transaction(runtime.sessions) as session:
        message = sync.replay(
            session, OutboxMessage, message_id, program_id=principal.program_id, now=utcnow()
        )
        audit(
            session,
            principal,
            action="outbox_message.replayed",
            subject_kind="outbox_message",
            subject_id=message.id,
            program_id=message.program_id,
        )
        out = outbox_out(message)
    wake_worker(request)
    return out
