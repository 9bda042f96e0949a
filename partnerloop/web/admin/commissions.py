"""Admin pages: the commission review queue (pending first), filters, paging,
CSV, and the two review decisions: approve, or decline with a reason the
affiliate will read. Selected rows can be approved at once.

Each decision is checked against the session's CSRF token, then the role
(REVIEW_COMMISSIONS), and commits with one audit entry per commission. The
reason stays on the commission (it is shown to the affiliate); the audit
entry records the move, not the free text.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partnerloop.access.roles import Permission
from partnerloop.affiliates import service as affiliates
from partnerloop.commissions import service as commissions
from partnerloop.commissions.models import Commission
from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.core.money import format_amount
from partnerloop.web.admin.guard import ProgramChoice, ProgramQuery, Staff, StaffDep
from partnerloop.web.admin.manage_helpers import (
    EXPORT_BATCH,
    HTMX_CONFIG,
    MAX_EXPORT_ROWS,
    PAGE_SIZE,
    FormText,
    audit,
    back_to,
    day,
    is_htmx,
    link,
    row_fragment,
    see_other,
    when,
)
from partnerloop.web.api.common import parse_moment
from partnerloop.web.csv_export import csv_response
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render

router = APIRouter(include_in_schema=False)

DEFAULT_STATE = "pending"  # the review queue
ANY_STATE = "all"
MAX_BULK = 200
MAX_REASON = 1000


@dataclass(frozen=True)
class Filters:
    state: str  # a state, or "all"
    affiliate: str
    from_: str
    to: str

    def params(self, program: ProgramChoice) -> dict[str, str | None]:
        return {
            "program": program.id,
            "state": self.state,
            "affiliate": self.affiliate,
            "from": self.from_,
            "to": self.to,
        }


@dataclass(frozen=True)
class CommissionRow:
    id: str
    created: str
    affiliate_id: str
    affiliate_name: str
    order_id: str
    state: str
    amount: str  # in the commission's own currency, e.g. "12.50 EUR"
    order_amount: str
    hold_until: str
    decline_reason: str | None

    @property
    def can_approve(self) -> bool:
        return self.state == "pending"

    @property
    def can_decline(self) -> bool:
        return self.state in ("pending", "approved")


def _money(amount_minor: int, currency: str) -> str:
    return f"{format_amount(amount_minor, currency)} {currency}"


def _rows(session: Session, cipher: FieldCipher, found: list[Commission]) -> list[CommissionRow]:
    names = affiliates.names_by_id(session, cipher, (c.affiliate_id for c in found))
    return [
        CommissionRow(
            id=c.id,
            created=when(c.created_at),
            affiliate_id=c.affiliate_id,
            affiliate_name=names.get(c.affiliate_id, c.affiliate_id),
            order_id=c.order_id,
            state=c.state,
            amount=_money(c.amount_minor, c.currency),
            order_amount=_money(c.base_amount_minor, c.currency),
            hold_until=day(c.hold_until),
            decline_reason=c.decline_reason,
        )
        for c in found
    ]


def _query(
    session: Session, program: ProgramChoice, filters: Filters, *, after: str | None, limit: int
) -> list[Commission]:
    return commissions.list_commissions(
        session,
        program_id=program.id,
        affiliate_id=filters.affiliate or None,
        state=None if filters.state == ANY_STATE else filters.state,
        created_from=parse_moment(filters.from_, field="from"),
        created_to=parse_moment(filters.to, field="to", end=True),
        after=after,
        limit=limit,
    )


def _filters(
    state: str | None, affiliate: str | None, from_: str | None, to: str | None
) -> Filters:
    return Filters(
        state=state or DEFAULT_STATE,
        affiliate=(affiliate or "").strip(),
        from_=from_ or "",
        to=to or "",
    )


FromQuery = Annotated[str | None, Query(alias="from", description="Created on or after")]


@router.get("/admin/commissions")
def commissions_page(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    state: str | None = None,
    affiliate: str | None = None,
    from_: FromQuery = None,
    to: str | None = None,
    after: str | None = None,
    approved: int | None = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    filters = _filters(state, affiliate, from_, to)
    with runtime.sessions() as session:
        found = _query(session, chosen, filters, after=after, limit=PAGE_SIZE + 1)
        rows = _rows(session, runtime.cipher, found[:PAGE_SIZE])
    params = filters.params(chosen)
    here = link("/admin/commissions", **params, after=after)
    return render(
        request,
        "admin/commissions.html",
        language=staff.language,
        staff=staff,
        program=chosen,
        rows=rows,
        filters=filters,
        states=(*commissions.STATES, ANY_STATE),
        can_review=staff.can(Permission.REVIEW_COMMISSIONS),
        approved=approved,
        back=here,
        htmx_config=HTMX_CONFIG,
        csv_url=link("/admin/commissions.csv", **params),
        first_url=link("/admin/commissions", **params) if after else None,
        next_url=link("/admin/commissions", **params, after=rows[-1].id)
        if len(found) > PAGE_SIZE
        else None,
    )


@router.get("/admin/commissions.csv")
def commissions_csv(
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    state: str | None = None,
    affiliate: str | None = None,
    from_: FromQuery = None,
    to: str | None = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    filters = _filters(state, affiliate, from_, to)
    out: list[list[Any]] = []
    after: str | None = None
    with runtime.sessions() as session:
        while len(out) < MAX_EXPORT_ROWS:
            batch = _query(session, chosen, filters, after=after, limit=EXPORT_BATCH)
            names = affiliates.names_by_id(session, runtime.cipher, (c.affiliate_id for c in batch))
            out.extend(
                [
                    c.id,
                    c.created_at,
                    c.affiliate_id,
                    names.get(c.affiliate_id, ""),
                    c.order_id,
                    c.state,
                    Decimal(format_amount(c.amount_minor, c.currency)),
                    c.currency,
                    Decimal(format_amount(c.base_amount_minor, c.currency)),
                    c.decline_reason,
                ]
                for c in batch
            )
            if len(batch) < EXPORT_BATCH:
                break
            after = batch[-1].id
    return csv_response(
        f"commissions-{chosen.id}.csv",
        [
            "id",
            "created_at",
            "affiliate_id",
            "affiliate_name",
            "order_id",
            "state",
            "amount",
            "currency",
            "order_amount",
            "decline_reason",
        ],
        out,
    )


def _answer(
    request: Request,
    staff: Staff,
    runtime: RuntimeDep,
    program: ProgramChoice,
    commission_id: str,
    next: str,
) -> Response:
    """The updated row for HTMX, else back to the list (Post/Redirect/Get)."""
    back = back_to(next, link("/admin/commissions", program=program.id))
    if not is_htmx(request):
        return see_other(back)
    with runtime.sessions() as session:
        row = _rows(
            session,
            runtime.cipher,
            [commissions.get_or_raise(session, commission_id, program_id=program.id)],
        )[0]
    return row_fragment(
        request,
        "admin/commissions_row.html",
        staff=staff,
        program=program,
        row=row,
        back=back,
        can_review=True,
    )


def _approve(
    session: Session, runtime: RuntimeDep, staff: Staff, program: ProgramChoice, commission_id: str
) -> bool:
    before = commissions.get_or_raise(session, commission_id, program_id=program.id).state
    row = commissions.approve(
        session, runtime.cipher, commission_id=commission_id, program_id=program.id, now=utcnow()
    )
    if row.state == before:  # approving twice changes nothing and logs nothing
        return False
    audit(
        session,
        staff,
        action="commission.approved",
        subject_kind="commission",
        subject_id=row.id,
        program_id=program.id,
        details={"from": before, "to": row.state},
    )
    return True


@router.post("/admin/commissions/{commission_id}/approve")
def approve(
    request: Request,
    commission_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    staff.check_csrf(csrf)
    staff.require(Permission.REVIEW_COMMISSIONS)
    chosen = staff.program(program)
    with transaction(runtime.sessions) as session:
        _approve(session, runtime, staff, chosen, commission_id)
    return _answer(request, staff, runtime, chosen, commission_id, next)


@router.post("/admin/commissions/{commission_id}/decline")
def decline(
    request: Request,
    commission_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    reason: FormText = "",
    next: FormText = "",
) -> Response:
    staff.check_csrf(csrf)
    staff.require(Permission.REVIEW_COMMISSIONS)
    chosen = staff.program(program)
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidInput(
            f"Say why the commission is declined (1 to {MAX_REASON} characters); "
            "the affiliate will read it.",
            code="reason_required",
            field="reason",
        )
    with transaction(runtime.sessions) as session:
        before = commissions.get_or_raise(session, commission_id, program_id=chosen.id).state
        row = commissions.decline(
            session,
            runtime.cipher,
            commission_id=commission_id,
            program_id=chosen.id,
            now=utcnow(),
            reason=reason,
        )
        if row.state != before:
            audit(
                session,
                staff,
                action="commission.declined",
                subject_kind="commission",
                subject_id=row.id,
                program_id=chosen.id,
                details={"from": before, "to": row.state},
            )
    return _answer(request, staff, runtime, chosen, commission_id, next)


@router.post("/admin/commissions/bulk-approve")
def bulk_approve(
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    ids: Annotated[list[str] | None, Form()] = None,
    next: FormText = "",
) -> Response:
    """Approve every selected commission that is still pending (one transaction:
    all or none); those reviewed meanwhile are left as they are."""
    staff.check_csrf(csrf)
    staff.require(Permission.REVIEW_COMMISSIONS)
    chosen = staff.program(program)
    wanted = list(dict.fromkeys(ids or []))
    if len(wanted) > MAX_BULK:
        raise InvalidInput(
            f"Select at most {MAX_BULK} commissions at once.", code="too_many", field="ids"
        )
    approved = 0
    with transaction(runtime.sessions) as session:
        for commission_id in wanted:
            current = commissions.get_or_raise(session, commission_id, program_id=chosen.id)
            if current.state == "pending" and _approve(
                session, runtime, staff, chosen, commission_id
            ):
                approved += 1
    back = back_to(next, link("/admin/commissions", program=chosen.id))
    return see_other(back + ("&" if "?" in back else "?") + f"approved={approved}")
