"""Admin pages: a program's connectors (shops, CRMs, outgoing webhooks): what
each is, whether it is on, the webhook URL to paste into the shop or CRM, and
how its deliveries are doing; enable or disable an outgoing webhook endpoint.

Secrets and credentials never reach the page: rows are built from the API's
own connector shape (which carries a secret only right after it was made),
and an outgoing endpoint's URL is shown by its host only, since receivers
often put a token in the path or query.

Changes need MANAGE_CONNECTORS (owner, manager): finance and analyst see the
page without the buttons, and a post from them is refused with 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from partnerloop.access.roles import Permission
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Conflict
from partnerloop.integrations import connectors, outbound
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import DELIVERY_KINDS
from partnerloop.integrations.webhooks.connector import KIND as WEBHOOK_KIND
from partnerloop.sync import service as sync
from partnerloop.web.admin.guard import ProgramChoice, ProgramQuery, Staff, StaffDep
from partnerloop.web.admin.manage_helpers import (
    HTMX_CONFIG,
    FormText,
    audit,
    back_to,
    is_htmx,
    link,
    row_fragment,
    see_other,
    when,
)
from partnerloop.web.api.connectors import connector_out
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render

router = APIRouter(include_in_schema=False)

# The reason stored when staff switch an endpoint off (the page translates it).
STAFF_REASON = "disabled by staff"
MAX_CONNECTORS = 500  # a program has a handful; the bound keeps the page bounded


@dataclass(frozen=True)
class Health:
    delivered_24h: int = 0
    p95_ms: int | None = None
    backlog: int = 0
    dead: int = 0


@dataclass(frozen=True)
class ConnectorRow:
    id: str
    kind: str
    direction: str  # in | out
    status: str  # active | disabled
    disabled_reason: str | None
    disabled_by_staff: bool
    disabled_at: str
    webhook_url: str | None
    target_host: str | None  # outgoing webhooks: where deliveries go
    health: Health | None  # None: nothing is delivered to this connector
    can_toggle: bool  # only outgoing webhook endpoints are switched on and off


def _health(stats: list[sync.DestinationStats]) -> dict[str, Health]:
    """Per connector, over every destination kind that names it (a CRM's
    deliveries, a shop's write-back)."""
    merged: dict[str, Health] = {}
    for s in stats:
        seen = merged.get(s.destination_id, Health())
        p95 = max(
            (v for v in (seen.p95_ms, s.latency_p95_ms) if v is not None),
            default=None,
        )
        merged[s.destination_id] = Health(
            delivered_24h=seen.delivered_24h + s.delivered,
            p95_ms=p95,
            backlog=seen.backlog + s.backlog,
            dead=seen.dead + s.dead,
        )
    return merged


def _row(connector: Connector, *, public_url: str, health: dict[str, Health]) -> ConnectorRow:
    shape = connector_out(connector, public_url=public_url)
    target = None
    if connector.kind == WEBHOOK_KIND:
        target = urlsplit(str(connector.settings.get("url", ""))).hostname
    return ConnectorRow(
        id=shape.id,
        kind=shape.kind,
        direction=shape.direction,
        status=shape.status,
        disabled_reason=shape.disabled_reason,
        disabled_by_staff=shape.disabled_reason == STAFF_REASON,
        disabled_at=when(connector.disabled_at),
        webhook_url=shape.webhook_url,
        target_host=target,
        health=health.get(connector.id) or (Health() if connector.kind in DELIVERY_KINDS else None),
        can_toggle=connector.kind == WEBHOOK_KIND,
    )


@router.get("/admin/connectors")
def connectors_page(
    request: Request, staff: StaffDep, runtime: RuntimeDep, program: ProgramQuery = None
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    with runtime.sessions() as session:
        found = connectors.list_connectors(session, program_id=chosen.id, limit=MAX_CONNECTORS)
        health = _health(
            sync.destination_stats(
                session, kinds=list(DELIVERY_KINDS), program_id=chosen.id, now=utcnow()
            )
        )
        rows = [_row(c, public_url=runtime.settings.public_url, health=health) for c in found]
    return render(
        request,
        "admin/connectors.html",
        language=staff.language,
        staff=staff,
        program=chosen,
        rows=rows,
        can_manage=staff.can(Permission.MANAGE_CONNECTORS),
        back=link("/admin/connectors", program=chosen.id),
        htmx_config=HTMX_CONFIG,
    )


def _switch(
    request: Request,
    turn_on: bool,
    connector_id: str,
    staff: Staff,
    runtime: RuntimeDep,
    program: str | None,
    csrf: str,
    next: str,
) -> Response:
    staff.check_csrf(csrf)
    staff.require(Permission.MANAGE_CONNECTORS)
    chosen: ProgramChoice = staff.program(program)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        row = connectors.get_or_raise(session, connector_id, program_id=chosen.id)
        if row.kind != WEBHOOK_KIND:
            raise Conflict(
                f"A {row.kind} connector is not switched on and off here; only outgoing "
                "webhook endpoints are.",
                code="not_an_outgoing_connector",
            )
        wanted = "active" if turn_on else "disabled"
        if row.status != wanted:  # switching twice changes nothing and logs nothing
            if turn_on:
                outbound.enable(session, connector=row, now=now)
            else:
                outbound.disable(
                    session, runtime.cipher, connector=row, reason=STAFF_REASON, now=now
                )
            audit(
                session,
                staff,
                action="connector.enabled" if turn_on else "connector.disabled",
                subject_kind="connector",
                subject_id=row.id,
                program_id=chosen.id,
                details={"kind": row.kind},
            )
        health = _health(
            sync.destination_stats(
                session,
                kinds=list(DELIVERY_KINDS),
                program_id=chosen.id,
                destination_id=row.id,
                now=now,
            )
        )
        shown = _row(row, public_url=runtime.settings.public_url, health=health)
    back = back_to(next, link("/admin/connectors", program=chosen.id))
    if is_htmx(request):
        return row_fragment(
            request,
            "admin/connectors_row.html",
            staff=staff,
            program=chosen,
            row=shown,
            back=back,
            can_manage=True,
        )
    return see_other(back)


@router.post("/admin/connectors/{connector_id}/enable")
def enable(
    request: Request,
    connector_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    """Switch an outgoing endpoint back on; its dead letters stay dead until replayed."""
    return _switch(request, True, connector_id, staff, runtime, program, csrf, next)


@router.post("/admin/connectors/{connector_id}/disable")
def disable(
    request: Request,
    connector_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    """Switch an outgoing endpoint off: its messages are kept (dead-lettered) to replay."""
    return _switch(request, False, connector_id, staff, runtime, program, csrf, next)
