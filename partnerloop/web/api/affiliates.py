from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.affiliates import service as affiliates
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.money import format_amount
from partnerloop.programs import service as programs
from partnerloop.web.api.common import AMOUNT_DOC, ERRORS, audit
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep

router = APIRouter(tags=["affiliates"])


class AffiliateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    email: str
    name: str


class AffiliateOut(BaseModel):
    id: str
    email: str
    name: str
    status: Literal["pending", "approved", "rejected", "suspended"]
    program_ids: list[str]
    created_at: datetime


class AffiliateList(BaseModel):
    items: list[AffiliateOut]
    next_cursor: str | None


class CommissionOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    type: Literal["percentage", "fixed"] | None = Field(description="null removes the override.")
    value: str | None = Field(
        default=None, description="Percentage or fixed amount (" + AMOUNT_DOC + ")"
    )


def _out(view: affiliates.AffiliateView) -> AffiliateOut:
    return AffiliateOut(**view.__dict__)


@router.post(
    "/affiliates",
    status_code=201,
    response_model=AffiliateOut,
    responses={
        **ERRORS,
        200: {"model": AffiliateOut, "description": "Known e-mail: enrolled (or already was)"},
    },
)
def sign_up(
    body: AffiliateIn, principal: PrincipalDep, runtime: RuntimeDep, response: Response
) -> AffiliateOut:
    """Sign an affiliate up for a program. New affiliates start `pending`."""
    principal.require(Scope.write, Permission.MANAGE_AFFILIATES)
    principal.require_program(body.program_id)
    with transaction(runtime.sessions) as session:
        result = affiliates.sign_up(
            session,
            runtime.cipher,
            program_id=body.program_id,
            email=body.email,
            name=body.name,
            now=utcnow(),
        )
        audit(
            session,
            principal,
            action="affiliate.signed_up",
            subject_kind="affiliate",
            subject_id=result.affiliate.id,
            program_id=body.program_id,
            details={"created": result.created},
        )
        if not result.created:
            response.status_code = 200
        return _out(affiliates.view(session, runtime.cipher, result.affiliate))


@router.get("/affiliates", response_model=AffiliateList, responses=ERRORS)
def list_affiliates(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    status: str | None = None,
) -> AffiliateList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = affiliates.list_affiliates(
            session,
            program_id=principal.visible_program(program_id),
            status=status,
            after=page.after,
            limit=page.limit,
        )
        items = [_out(affiliates.view(session, runtime.cipher, row)) for row in rows]
    return AffiliateList(items=items, **page.render(rows))


@router.get("/affiliates/{affiliate_id}", response_model=AffiliateOut, responses=ERRORS)
def get_affiliate(affiliate_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> AffiliateOut:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        row = affiliates.get_or_raise(session, affiliate_id, program_id=principal.program_id)
        return _out(affiliates.view(session, runtime.cipher, row))


def _transition(
    action: str, affiliate_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> AffiliateOut:
    principal.require(Scope.admin, Permission.MANAGE_AFFILIATES)
    move = {
        "approve": affiliates.approve,
        "reject": affiliates.reject,
        "suspend": affiliates.suspend,
    }[action]
    with transaction(runtime.sessions) as session:
        row = move(
            session,
            runtime.cipher,
            affiliate_id=affiliate_id,
            program_id=principal.program_id,
            now=utcnow(),
        )
        audit(
            session,
            principal,
            action=f"affiliate.{row.status}",
            subject_kind="affiliate",
            subject_id=row.id,
            program_id=principal.program_id
            or next(iter(affiliates.program_ids_of(session, row.id)), None),
            details={"status": row.status},
        )
        return _out(affiliates.view(session, runtime.cipher, row))


@router.post("/affiliates/{affiliate_id}/approve", response_model=AffiliateOut, responses=ERRORS)
def approve(affiliate_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> AffiliateOut:
    """pending, rejected or suspended -> approved. Approving twice is harmless."""
    return _transition("approve", affiliate_id, principal, runtime)


@router.post("/affiliates/{affiliate_id}/reject", response_model=AffiliateOut, responses=ERRORS)
def reject(affiliate_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> AffiliateOut:
    """pending -> rejected."""
    return _transition("reject", affiliate_id, principal, runtime)


@router.post("/affiliates/{affiliate_id}/suspend", response_model=AffiliateOut, responses=ERRORS)
def suspend(affiliate_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> AffiliateOut:
    """approved -> suspended: their links stop tracking and new orders earn nothing."""
    return _transition("suspend", affiliate_id, principal, runtime)


@router.put("/affiliates/{affiliate_id}/commission", responses=ERRORS)
def set_commission(
    affiliate_id: str,
    body: CommissionOverrideIn,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    request: Request,
) -> dict[str, object]:
    """Give this affiliate their own commission terms in one program (null type: back to default)."""
    principal.require(Scope.admin, Permission.MANAGE_AFFILIATES)
    principal.require_program(body.program_id)
    with transaction(runtime.sessions) as session:
        enrollment = affiliates.set_commission_override(
            session,
            program_id=body.program_id,
            affiliate_id=affiliate_id,
            commission_type=body.type,
            commission_value=body.value,
        )
        audit(
            session,
            principal,
            action="affiliate.commission_set",
            subject_kind="affiliate",
            subject_id=affiliate_id,
            program_id=body.program_id,
            details={"type": body.type, "value": body.value},
        )
        terms = affiliates.override_terms(enrollment)
        currency = programs.get_or_raise(session, body.program_id).currency
    commission = None
    if terms is not None:
        # The value as stored (canonical), not as typed: "5" becomes "5.00" EUR.
        value = (
            terms.rate
            if terms.type == "percentage"
            else format_amount(terms.amount_minor or 0, currency)
        )
        commission = {"type": terms.type, "value": value}
    return {"affiliate_id": affiliate_id, "program_id": body.program_id, "commission": commission}
