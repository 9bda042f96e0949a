"""Admin pages: the delivery log of a program's connectors (outbox messages and
their attempts), newest first, and replay of a dead letter.

A message's payload and the remote answers may carry personal data: they
stay encrypted and are never shown here. The page shows the event type, the
ids, states, times, HTTP statuses and our own error text.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partnerloop.access.roles import Permission
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import NotFound
from partnerloop.integrations import connectors
from partnerloop.integrations.registry import DELIVERY_KINDS
from partnerloop.sync import service as sync
from partnerloop.sync.models import OutboxMessage
from partnerloop.web.admin.guard import ProgramChoice, ProgramQuery, StaffDep
from partnerloop.web.admin.manage_helpers import (
    HTMX_CONFIG,
    PAGE_SIZE,
    FormText,
    audit,
    back_to,
    is_htmx,
    link,
    row_fragment,
    see_other,
    when,
)
from partnerloop.web.deps import RuntimeDep, wake_worker
from partnerloop.web.pages import render

router = APIRouter(include_in_schema=False)

MAX_ERROR_SHOWN = 300  # in the list; the detail page shows all we keep


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    created: str
    destination_kind: str
    destination_id: str
    topic: str
    state: str
    attempts: int
    next_attempt: str  # only while it waits
    delivered: str
    latency_ms: int | None
    last_error: str | None
    event_key: str


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    started: str
    duration_ms: int
    status_code: int | None
    outcome: str
    error: str | None


def _row(message: OutboxMessage, *, error_chars: int | None = MAX_ERROR_SHOWN) -> DeliveryRow:
    latency = None
    if message.delivered_at is not None:
        since = message.occurred_at or message.created_at
        latency = int((message.delivered_at - since).total_seconds() * 1000)
    error = message.last_error
    if error and error_chars is not None and len(error) > error_chars:
        error = error[:error_chars] + "…"
    return DeliveryRow(
        id=message.id,
        created=when(message.created_at),
        destination_kind=message.destination_kind,
        destination_id=message.destination_id,
        topic=message.topic,
        state=message.state,
        attempts=message.attempts,
        next_attempt=when(message.next_attempt_at) if message.state in sync.DUE_STATES else "",
        delivered=when(message.delivered_at),
        latency_ms=latency,
        last_error=error,
        event_key=message.idempotency_key,
    )


def _message(session: Session, program: ProgramChoice, message_id: str) -> OutboxMessage:
    """A delivery of this program (messages to other destinations, like the
    internal fan-out, are not deliveries and are not found)."""
    message = sync.get_or_raise(session, OutboxMessage, message_id, program_id=program.id)
    if message.destination_kind not in DELIVERY_KINDS:
        raise NotFound(f"No delivery {message_id}.", code="delivery_not_found")
    return message


@router.get("/admin/deliveries")
def deliveries_page(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    connector: str | None = None,
    state: str | None = None,
    before: str | None = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    with runtime.sessions() as session:
        found = sync.list_messages_newest(
            session,
            program_id=chosen.id,
            destination_kinds=list(DELIVERY_KINDS),
            destination_id=connector or None,
            state=state or None,
            before=before,
            limit=PAGE_SIZE + 1,
        )
        rows = [_row(m) for m in found[:PAGE_SIZE]]
        choices = [
            (c.id, c.kind) for c in connectors.list_connectors(session, program_id=chosen.id)
        ]
    params: dict[str, str | None] = {
        "program": chosen.id,
        "connector": connector,
        "state": state,
    }
    return render(
        request,
        "admin/deliveries.html",
        language=staff.language,
        staff=staff,
        program=chosen,
        rows=rows,
        connector=connector or "",
        state=state or "",
        states=sync.OUTBOX_STATES,
        connectors=choices,
        can_manage=staff.can(Permission.MANAGE_CONNECTORS),
        back=link("/admin/deliveries", **params, before=before),
        htmx_config=HTMX_CONFIG,
        first_url=link("/admin/deliveries", **params) if before else None,
        next_url=link("/admin/deliveries", **params, before=rows[-1].id)
        if len(found) > PAGE_SIZE
        else None,
    )


@router.get("/admin/deliveries/{message_id}")
def delivery_page(
    request: Request,
    message_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    with runtime.sessions() as session:
        message = _message(session, chosen, message_id)
        row = _row(message, error_chars=None)
        # Status, time and our error text only: the remote answer stays sealed.
        attempts = [
            AttemptRow(
                attempt=a.attempt,
                started=when(a.started_at),
                duration_ms=a.duration_ms,
                status_code=a.status_code,
                outcome=a.outcome,
                error=a.error,
            )
            for a in sync.list_attempts(session, message.id)
        ]
    return render(
        request,
        "admin/deliveries_detail.html",
        language=staff.language,
        staff=staff,
        program=chosen,
        row=row,
        attempts=attempts,
        replayed=request.query_params.get("replayed") == "1",
        can_manage=staff.can(Permission.MANAGE_CONNECTORS),
        back=link(f"/admin/deliveries/{message_id}", program=chosen.id),
    )


@router.post("/admin/deliveries/{message_id}/replay")
def replay(
    request: Request,
    message_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    """Queue a dead letter again, with a fresh set of attempts."""
    staff.check_csrf(csrf)
    staff.require(Permission.MANAGE_CONNECTORS)
    chosen = staff.program(program)
    with transaction(runtime.sessions) as session:
        message = _message(session, chosen, message_id)
        replayed = sync.replay(
            session, OutboxMessage, message.id, program_id=chosen.id, now=utcnow()
        )
        audit(
            session,
            staff,
            action="outbox_message.replayed",
            subject_kind="outbox_message",
            subject_id=replayed.id,
            program_id=chosen.id,
            details={"connector_id": replayed.destination_id, "topic": replayed.topic},
        )
        row = _row(replayed)
    wake_worker(request)
    if is_htmx(request):
        return row_fragment(
            request,
            "admin/deliveries_row.html",
            staff=staff,
            program=chosen,
            row=row,
            back=back_to(next, link("/admin/deliveries", program=chosen.id)),
            can_manage=True,
        )
    default = link(f"/admin/deliveries/{message_id}", program=chosen.id, replayed="1")
    return see_other(back_to(next, default) if next else default)
