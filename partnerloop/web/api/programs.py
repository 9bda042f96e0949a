from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.money import format_amount
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.web.api.common import AMOUNT_DOC, CURRENCY_DOC, ERRORS
from partnerloop.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(tags=["programs"])


class CommissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["percentage", "fixed"]
    value: str = Field(description='Percentage ("10" is 10 %) or fixed amount (' + AMOUNT_DOC + ")")
    recurring: bool = Field(
        False,
        description="Subscription renewals earn the commission again (recurring commission).",
    )


class ProgramIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    currency: str = Field(description=CURRENCY_DOC)
    cookie_days: int = Field(30, description="How long after a click an order still counts for it.")
    allowed_domains: list[str] = Field(
        description="Hosts links may send shoppers to (subdomains included)."
    )
    commission: CommissionIn
    hold_days: int = Field(
        30, description="Days a commission stays pending before it is approved automatically."
    )


class CommissionOut(BaseModel):
    type: str
    value: str
    recurring: bool


class ProgramOut(BaseModel):
    id: str
    name: str
    currency: str
    cookie_days: int
    allowed_domains: list[str]
    commission: CommissionOut
    hold_days: int
    postback_url: str = Field(
        description="Where apps and networks send S2S postbacks (add your token)."
    )
    created_at: datetime
    postback_token: str | None = Field(
        default=None, description="Shown once, when the program is created or the token rotated."
    )


class ProgramList(BaseModel):
    items: list[ProgramOut]
    next_cursor: str | None = None


def commission_out(program: Program) -> CommissionOut:
    if program.commission_type == "percentage":
        return CommissionOut(
            type="percentage",
            value=program.commission_rate or "0",
            recurring=program.recurring_commission,
        )
    return CommissionOut(
        type="fixed",
        value=format_amount(program.commission_amount_minor or 0, program.currency),
        recurring=program.recurring_commission,
    )


def program_out(program: Program, *, public_url: str, token: str | None = None) -> ProgramOut:
    return ProgramOut(
        id=program.id,
        name=program.name,
        currency=program.currency,
        cookie_days=program.cookie_days,
        allowed_domains=program.allowed_domains,
        commission=commission_out(program),
        hold_days=program.hold_days,
        postback_url=f"{public_url}/postback?token={token or '<token>'}",
        created_at=program.created_at,
        postback_token=token,
    )


@router.post("/programs", status_code=201, response_model=ProgramOut, responses=ERRORS)
def create_program(body: ProgramIn, principal: PrincipalDep, runtime: RuntimeDep) -> ProgramOut:
    """Create an affiliate program. Needs an admin key for all programs."""
    principal.require(Scope.admin)
    principal.require_all_programs()
    with transaction(runtime.sessions) as session:
        created = programs.create(
            session,
            name=body.name,
            currency=body.currency,
            cookie_days=body.cookie_days,
            allowed_domains=body.allowed_domains,
            commission_type=body.commission.type,
            commission_value=body.commission.value,
            recurring_commission=body.commission.recurring,
            hold_days=body.hold_days,
            now=utcnow(),
        )
        return program_out(
            created.program, public_url=runtime.settings.public_url, token=created.postback_token
        )


@router.get("/programs", response_model=ProgramList, responses=ERRORS)
def list_programs(principal: PrincipalDep, runtime: RuntimeDep) -> ProgramList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = programs.list_programs(session, program_id=principal.program_id)
        return ProgramList(
            items=[program_out(p, public_url=runtime.settings.public_url) for p in rows]
        )


@router.get("/programs/{program_id}", response_model=ProgramOut, responses=ERRORS)
def get_program(program_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> ProgramOut:
    principal.require(Scope.read)
    principal.require_program(program_id)
    with runtime.sessions() as session:
        return program_out(
            programs.get_or_raise(session, program_id), public_url=runtime.settings.public_url
        )


@router.post("/programs/{program_id}/postback-token", response_model=ProgramOut, responses=ERRORS)
def rotate_postback_token(
    program_id: str, principal: PrincipalDep, runtime: RuntimeDep, response: Response
) -> ProgramOut:
    """Issue a new postback token; the old one stops working at once."""
    principal.require(Scope.admin)
    principal.require_program(program_id)
    with transaction(runtime.sessions) as session:
        token = programs.rotate_postback_token(session, program_id=program_id)
        return program_out(
            programs.get_or_raise(session, program_id),
            public_url=runtime.settings.public_url,
            token=token,
        )
