from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.commissions import service as commissions
from partnerloop.commissions.models import Commission
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.money import format_amount
from partnerloop.web.api.common import ERRORS, audit, parse_moment
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep

router = APIRouter(tags=["commissions"])


class CommissionOut(BaseModel):
    id: str
    program_id: str
    conversion_id: str
    affiliate_id: str
    order_id: str
    amount: str
    original_amount: str
    clawback_amount: str
    currency: str
    state: str
    rule: dict[str, str]
    hold_until: datetime
    created_at: datetime
    updated_at: datetime
    decline_reason: str | None = Field(
        default=None, description="Why staff declined it (declined commissions only)."
    )


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(
        default=None,
        max_length=1000,
        description="Why, shown to the affiliate: about the sale, never about a person.",
    )


class CommissionList(BaseModel):
    items: list[CommissionOut]
    next_cursor: str | None


def commission_out(row: Commission) -> CommissionOut:
    rule_value = (
        row.rule_value
        if row.rule_type == "percentage"
        else format_amount(int(row.rule_value), row.currency)
    )
    return CommissionOut(
        id=row.id,
        program_id=row.program_id,
        conversion_id=row.conversion_id,
        affiliate_id=row.affiliate_id,
        order_id=row.order_id,
        amount=format_amount(row.amount_minor, row.currency),
        original_amount=format_amount(row.original_amount_minor, row.currency),
        clawback_amount=format_amount(row.clawback_minor, row.currency),
        currency=row.currency,
        state=row.state,
        rule={"type": row.rule_type, "value": rule_value},
        hold_until=row.hold_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
        decline_reason=row.decline_reason,
    )


@router.get("/commissions", response_model=CommissionList, responses=ERRORS)
def list_commissions(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    affiliate_id: str | None = None,
    state: str | None = None,
    from_: Annotated[
        str | None, Query(alias="from", description="Created on/after (date or date-time).")
    ] = None,
    to: Annotated[
        str | None, Query(description="Created before/through (date: inclusive).")
    ] = None,
) -> CommissionList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = commissions.list_commissions(
            session,
            program_id=principal.visible_program(program_id),
            affiliate_id=affiliate_id,
            state=state,
            created_from=parse_moment(from_, field="from"),
            created_to=parse_moment(to, field="to", end=True),
            after=page.after,
            limit=page.limit,
        )
        return CommissionList(items=[commission_out(r) for r in rows], **page.render(rows))


@router.get("/commissions/{commission_id}", response_model=CommissionOut, responses=ERRORS)
def get_commission(
    commission_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> CommissionOut:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        return commission_out(
            commissions.get_or_raise(session, commission_id, program_id=principal.program_id)
        )


def _move(
    action: str,
    commission_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    *,
    reason: str | None = None,
) -> CommissionOut:
    # Paying is the payouts side of finance; approving and declining is review.
    principal.require(
        Scope.admin,
        Permission.MANAGE_PAYOUTS if action == "mark-paid" else Permission.REVIEW_COMMISSIONS,
    )
    with transaction(runtime.sessions) as session:
        if action == "decline":
            row = commissions.decline(
                session,
                runtime.cipher,
                commission_id=commission_id,
                program_id=principal.program_id,
                now=utcnow(),
                reason=reason,
            )
        else:
            move = {"approve": commissions.approve, "mark-paid": commissions.mark_paid}[action]
            row = move(
                session,
                runtime.cipher,
                commission_id=commission_id,
                program_id=principal.program_id,
                now=utcnow(),
            )
        audit(
            session,
            principal,
            action=f"commission.{row.state}",
            subject_kind="commission",
            subject_id=row.id,
            program_id=row.program_id,
            # The reason stays on the commission: free text is kept out of the log.
        )
        return commission_out(row)


@router.post("/commissions/{commission_id}/approve", response_model=CommissionOut, responses=ERRORS)
def approve(commission_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> CommissionOut:
    """pending -> approved, before its hold period is over. Approving twice is harmless."""
    return _move("approve", commission_id, principal, runtime)


@router.post("/commissions/{commission_id}/decline", response_model=CommissionOut, responses=ERRORS)
def decline(
    commission_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    body: DeclineIn | None = None,
) -> CommissionOut:
    """pending or approved -> declined (e.g. after a fraud review), optionally with
    a reason the affiliate sees."""
    return _move("decline", commission_id, principal, runtime, reason=body.reason if body else None)


@router.post(
    "/commissions/{commission_id}/mark-paid", response_model=CommissionOut, responses=ERRORS
)
def mark_paid(commission_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> CommissionOut:
    """approved -> paid, for payouts made outside partnerloop."""
    return _move("mark-paid", commission_id, principal, runtime)
