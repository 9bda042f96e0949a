"""Admin pages: a program's affiliates (list, filters, CSV, detail) and what
staff do with them: approve, reject, suspend, give their own commission terms.

Every change is checked against the session's CSRF token first, then the role
(MANAGE_AFFILIATES), and commits together with its audit entry. An affiliate
of a program the user may not see is "not found", on pages and posts alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partnerloop.access.roles import Permission
from partnerloop.affiliates import portal
from partnerloop.affiliates import service as affiliates
from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.core.money import format_amount
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.web.admin.guard import ProgramChoice, ProgramQuery, Staff, StaffDep
from partnerloop.web.admin.manage_helpers import (
    EXPORT_BATCH,
    HTMX_CONFIG,
    MAX_EXPORT_ROWS,
    PAGE_SIZE,
    FormText,
    audit,
    back_to,
    current_url,
    day,
    is_htmx,
    link,
    row_fragment,
    see_other,
    when,
)
from partnerloop.web.csv_export import csv_response
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render, translator

router = APIRouter(include_in_schema=False)

# Which buttons a row offers: the transitions the domain allows from each status.
ACTIONS_FROM: dict[str, tuple[str, ...]] = {
    "pending": ("approve", "reject"),
    "approved": ("suspend",),
    "suspended": ("approve",),
    "rejected": ("approve",),
}
Action = Literal["approve", "reject", "suspend"]


@dataclass(frozen=True)
class AffiliateRow:
    id: str
    name: str
    email: str
    status: str
    joined: str
    override: str | None  # None: the program's terms
    actions: tuple[str, ...]


def _override_text(enrollment: Any, currency: str) -> str | None:
    terms = affiliates.override_terms(enrollment)
    if terms is None:
        return None
    if terms.type == "percentage":
        return f"{terms.rate} %"
    return f"{format_amount(terms.amount_minor or 0, currency)} {currency}"


def _row(cipher: FieldCipher, member: affiliates.Member, currency: str) -> AffiliateRow:
    affiliate = member.affiliate
    return AffiliateRow(
        id=affiliate.id,
        name=cipher.decrypt(affiliate.name_enc, field=affiliates.NAME_FIELD),
        email=cipher.decrypt(affiliate.email_enc, field=affiliates.EMAIL_FIELD),
        status=affiliate.status,
        joined=day(member.enrollment.created_at),
        override=_override_text(member.enrollment, currency),
        actions=ACTIONS_FROM.get(affiliate.status, ()),
    )


def _status(value: str | None) -> str | None:
    return value or None


def _members(
    session: Session,
    cipher: FieldCipher,
    program: ProgramChoice,
    *,
    status: str | None,
    email: str | None,
    after: str | None,
    limit: int,
) -> list[affiliates.Member]:
    return affiliates.list_members(
        session,
        cipher,
        program_id=program.id,
        status=_status(status),
        email=email,
        after=after,
        limit=limit,
    )


@router.get("/admin/affiliates")
def affiliates_page(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    status: str | None = None,
    email: str | None = None,
    after: str | None = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    with runtime.sessions() as session:
        found = _members(
            session,
            runtime.cipher,
            chosen,
            status=status,
            email=email,
            after=after,
            limit=PAGE_SIZE + 1,
        )
        rows = [_row(runtime.cipher, m, chosen.currency) for m in found[:PAGE_SIZE]]
    filters = {"program": chosen.id, "status": status, "email": email}
    return render(
        request,
        "admin/affiliates.html",
        language=staff.language,
        staff=staff,
        program=chosen,
        rows=rows,
        status_filter=status or "",
        email=email or "",
        statuses=affiliates.STATUSES,
        can_manage=staff.can(Permission.MANAGE_AFFILIATES),
        back=current_url(request),
        htmx_config=HTMX_CONFIG,
        csv_url=link("/admin/affiliates.csv", **filters),
        first_url=link("/admin/affiliates", **filters) if after else None,
        next_url=link("/admin/affiliates", **filters, after=rows[-1].id)
        if len(found) > PAGE_SIZE
        else None,
    )


@router.get("/admin/affiliates.csv")
def affiliates_csv(
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    status: str | None = None,
    email: str | None = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    rows: list[list[Any]] = []
    after: str | None = None
    with runtime.sessions() as session:
        while len(rows) < MAX_EXPORT_ROWS:
            batch = _members(
                session,
                runtime.cipher,
                chosen,
                status=status,
                email=email,
                after=after,
                limit=EXPORT_BATCH,
            )
            for member in batch:
                row = _row(runtime.cipher, member, chosen.currency)
                terms = affiliates.override_terms(member.enrollment)
                rows.append(
                    [
                        row.id,
                        row.name,
                        row.email,
                        row.status,
                        row.joined,
                        terms.type if terms else None,
                        _override_value(terms, chosen.currency),
                    ]
                )
            if len(batch) < EXPORT_BATCH:
                break
            after = batch[-1].affiliate.id
    return csv_response(
        f"affiliates-{chosen.id}.csv",
        ["id", "name", "email", "status", "joined", "commission_type", "commission_value"],
        rows,
    )


def _override_value(terms: programs.CommissionTerms | None, currency: str) -> Decimal | None:
    if terms is None:
        return None
    if terms.type == "percentage":
        return Decimal(terms.rate or "0")
    return Decimal(format_amount(terms.amount_minor or 0, currency))


def _answers(
    cipher: FieldCipher, member: affiliates.Member, program: Program, language: str
) -> list[tuple[str, Any]]:
    """The signup answers as (question, answer), in the program's question order;
    answers to questions the program no longer asks are still shown, by name."""
    answers: dict[str, Any] = dict(portal.signup_answers_of(cipher, member.enrollment))
    shown = [
        (field.label(language), answers.pop(field.name))
        for field in portal.fields_of(program)
        if field.name in answers
    ]
    shown.extend(sorted(answers.items()))
    return shown


def _detail(
    request: Request,
    staff: Staff,
    runtime: RuntimeDep,
    chosen: ProgramChoice,
    affiliate_id: str,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    language = translator(request, preferred=staff.language).language
    with runtime.sessions() as session:
        member = affiliates.member_or_raise(
            session, program_id=chosen.id, affiliate_id=affiliate_id
        )
        row = _row(runtime.cipher, member, chosen.currency)
        terms = affiliates.override_terms(member.enrollment)
        answers = _answers(
            runtime.cipher, member, programs.get_or_raise(session, chosen.id), language
        )
        changed = when(member.affiliate.status_changed_at)
    if form is None:
        value = _override_value(terms, chosen.currency)
        form = {
            "commission_type": terms.type if terms else "",
            "commission_value": str(value) if value is not None else "",
        }
    return render(
        request,
        "admin/affiliates_detail.html",
        status=status,
        language=staff.language,
        staff=staff,
        program=chosen,
        row=row,
        changed=changed,
        answers=answers,
        form=form,
        error=error,
        saved=status == 200 and request.query_params.get("saved") == "1",
        can_manage=staff.can(Permission.MANAGE_AFFILIATES),
        back=current_url(request),
        commissions_url=link(
            "/admin/commissions", program=chosen.id, affiliate=row.id, state="all"
        ),
    )


@router.get("/admin/affiliates/{affiliate_id}")
def affiliate_page(
    request: Request,
    affiliate_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
) -> Response:
    staff.require(Permission.READ)
    return _detail(request, staff, runtime, staff.program(program), affiliate_id)


_MOVES = {
    "approve": affiliates.approve,
    "reject": affiliates.reject,
    "suspend": affiliates.suspend,
}


def _change_status(
    request: Request,
    action: Action,
    affiliate_id: str,
    staff: Staff,
    runtime: RuntimeDep,
    program: str | None,
    csrf: str,
    next: str,
) -> Response:
    staff.check_csrf(csrf)
    staff.require(Permission.MANAGE_AFFILIATES)
    chosen = staff.program(program)
    with transaction(runtime.sessions) as session:
        before = affiliates.member_or_raise(
            session, program_id=chosen.id, affiliate_id=affiliate_id
        ).affiliate.status
        moved = _MOVES[action](
            session, runtime.cipher, affiliate_id=affiliate_id, program_id=chosen.id, now=utcnow()
        )
        if moved.status != before:  # approving twice changes nothing and logs nothing
            audit(
                session,
                staff,
                action=f"affiliate.{moved.status}",
                subject_kind="affiliate",
                subject_id=moved.id,
                program_id=chosen.id,
                details={"from": before, "to": moved.status},
            )
        member = affiliates.member_or_raise(session, program_id=chosen.id, affiliate_id=moved.id)
        row = _row(runtime.cipher, member, chosen.currency)
    back = back_to(next, link("/admin/affiliates", program=chosen.id))
    if is_htmx(request):
        return row_fragment(
            request,
            "admin/affiliates_row.html",
            staff=staff,
            program=chosen,
            row=row,
            back=back,
            can_manage=True,
        )
    return see_other(back)


@router.post("/admin/affiliates/{affiliate_id}/approve")
def approve(
    request: Request,
    affiliate_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    return _change_status(request, "approve", affiliate_id, staff, runtime, program, csrf, next)


@router.post("/admin/affiliates/{affiliate_id}/reject")
def reject(
    request: Request,
    affiliate_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    return _change_status(request, "reject", affiliate_id, staff, runtime, program, csrf, next)


@router.post("/admin/affiliates/{affiliate_id}/suspend")
def suspend(
    request: Request,
    affiliate_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    return _change_status(request, "suspend", affiliate_id, staff, runtime, program, csrf, next)


@router.post("/admin/affiliates/{affiliate_id}/commission")
def set_commission(
    request: Request,
    affiliate_id: str,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    commission_type: FormText = "",
    commission_value: FormText = "",
    clear: FormText = "",
) -> Response:
    staff.check_csrf(csrf)
    staff.require(Permission.MANAGE_AFFILIATES)
    chosen = staff.program(program)
    kind = None if clear or not commission_type else commission_type
    value = commission_value.strip() or None
    try:
        with transaction(runtime.sessions) as session:
            enrollment = affiliates.set_commission_override(
                session,
                program_id=chosen.id,
                affiliate_id=affiliate_id,
                commission_type=kind,
                commission_value=value,
            )
            terms = affiliates.override_terms(enrollment)
            stored = _override_value(terms, chosen.currency)
            audit(
                session,
                staff,
                action="affiliate.commission_set",
                subject_kind="affiliate",
                subject_id=affiliate_id,
                program_id=chosen.id,
                details={
                    "type": terms.type if terms else None,
                    "value": str(stored) if stored is not None else None,
                },
            )
    except InvalidInput as error:
        t = translator(request, preferred=staff.language)
        return _detail(
            request,
            staff,
            runtime,
            chosen,
            affiliate_id,
            status=422,
            error=t("affiliates.override_invalid", detail=error.detail),
            form={"commission_type": commission_type, "commission_value": commission_value},
        )
    return see_other(link(f"/admin/affiliates/{affiliate_id}", program=chosen.id, saved="1"))
