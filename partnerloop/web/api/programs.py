from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.money import format_amount
from partnerloop.programs import service as programs
from partnerloop.programs import settings as program_settings
from partnerloop.programs.models import Program
from partnerloop.programs.settings import ProgramSettings, SettingsInvalid
from partnerloop.web.api.common import AMOUNT_DOC, CURRENCY_DOC, ERRORS, Problem, audit
from partnerloop.web.deps import PrincipalDep, RuntimeDep
from partnerloop.web.problems import problem

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
    principal.require(Scope.admin, Permission.MANAGE_PROGRAM)
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
        audit(
            session,
            principal,
            action="program.created",
            subject_kind="program",
            subject_id=created.program.id,
            program_id=created.program.id,
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
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    principal.require_program(program_id)
    with transaction(runtime.sessions) as session:
        token = programs.rotate_postback_token(session, program_id=program_id)
        audit(
            session,
            principal,
            action="program.postback_token_rotated",
            subject_kind="program",
            subject_id=program_id,
            program_id=program_id,
        )
        return program_out(
            programs.get_or_raise(session, program_id),
            public_url=runtime.settings.public_url,
            token=token,
        )


# --- white label, signup and domains ------------------------------------------------------

TEXTS_DOC = (
    'Portal texts by key (welcome, terms, signup_intro) and language (en, nl): {"welcome": '
    '{"en": "...", "nl": "..."}}. At most 2,000 characters (terms: 20,000).'
)


class SignupField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Unique key of the answer: 1-40 of a-z, 0-9 and _.")
    label: dict[str, str] = Field(description='The question in both languages: {"en", "nl"}.')
    type: str = Field(description="text, url, textarea, select or checkbox.")
    required: bool = False
    options: list[str] | None = Field(default=None, description="select only: 1 to 50 choices.")


class ProgramSettingsIn(BaseModel):
    """Only the settings given change; null sets one back to its default."""

    model_config = ConfigDict(extra="forbid")
    portal_name: str | None = Field(
        default=None,
        description="Name shown on the portal, 1-200 characters (null: the program's name).",
    )
    logo_url: str | None = Field(default=None, description="https:// (or http://) URL of the logo.")
    brand_color: str | None = Field(default=None, description="#RRGGBB.")
    accent_color: str | None = Field(default=None, description="#RRGGBB.")
    portal_texts: dict[str, Any] | None = Field(default=None, description=TEXTS_DOC)
    mail_sender: str | None = Field(
        default=None,
        description="From of the program's e-mails, as Name <address> "
        "(null: the installation's PARTNERLOOP_MAIL_FROM).",
    )
    signup_approval: str | None = Field(
        default=None, description="manual (staff approve each signup) or auto."
    )
    signup_fields: list[SignupField] | None = Field(
        default=None, description="Extra signup questions, at most 20."
    )
    require_two_factor: bool | None = Field(
        default=None, description="Staff must sign in with a TOTP code to act on this program."
    )
    portal_domain: str | None = Field(
        default=None,
        description="Host serving the program's portal at / (e.g. partners.brand.example); "
        "point its DNS at this installation. null removes it.",
    )
    tracking_domain: str | None = Field(
        default=None,
        description="Host serving the program's links at /{code} (e.g. go.brand.example). "
        "null removes it.",
    )


class ProgramSettingsOut(BaseModel):
    program_id: str
    portal_name: str
    logo_url: str | None
    brand_color: str
    accent_color: str
    portal_texts: dict[str, dict[str, str]]
    mail_sender: str | None
    signup_approval: Literal["manual", "auto"]
    signup_fields: list[SignupField]
    require_two_factor: bool
    portal_domain: str | None
    tracking_domain: str | None


class SettingsProblem(Problem):
    errors: list[dict[str, str]] = Field(
        description="Every invalid setting: {field, code, message}."
    )


SETTINGS_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    422: {"model": SettingsProblem, "description": "Invalid settings; `errors` lists each"},
}


def settings_out(values: ProgramSettings) -> ProgramSettingsOut:
    return ProgramSettingsOut(
        program_id=values.program_id,
        portal_name=values.portal_name,
        logo_url=values.logo_url,
        brand_color=values.brand_color,
        accent_color=values.accent_color,
        portal_texts=values.portal_texts,
        mail_sender=values.mail_sender,
        signup_approval="auto" if values.signup_approval == "auto" else "manual",
        signup_fields=[SignupField.model_validate(item) for item in values.signup_fields],
        require_two_factor=values.require_two_factor,
        portal_domain=values.portal_domain,
        tracking_domain=values.tracking_domain,
    )


def settings_problem(error: SettingsInvalid) -> Response:
    return problem(
        422,
        code=error.code,
        title="Invalid input",
        detail=error.detail,
        field=error.field,
        errors=[
            {"field": e.field or "", "code": e.code, "message": e.detail} for e in error.errors
        ],
    )


@router.get("/programs/{program_id}/settings", response_model=ProgramSettingsOut, responses=ERRORS)
def get_program_settings(
    program_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> ProgramSettingsOut:
    """White label, signup, two-factor and domains of a program (defaults filled in)."""
    principal.require(Scope.read)
    principal.require_program(program_id)
    with runtime.sessions() as session:
        return settings_out(program_settings.get(session, program_id))


@router.patch(
    "/programs/{program_id}/settings",
    response_model=ProgramSettingsOut,
    responses=SETTINGS_ERRORS,
)
def update_program_settings(
    program_id: str, body: ProgramSettingsIn, principal: PrincipalDep, runtime: RuntimeDep
) -> Any:
    """Change some settings; all are checked first, and one invalid value changes
    nothing. A domain another program uses is 409 host_taken; the installation's own
    hosts cannot be given to a program (422 host_reserved)."""
    principal.require(Scope.admin, Permission.MANAGE_PROGRAM)
    principal.require_program(program_id)
    changes = body.model_dump(exclude_unset=True)
    try:
        with transaction(runtime.sessions) as session:
            changed = program_settings.update(
                session,
                program_id=program_id,
                changes=changes,
                now=utcnow(),
                reserved_hosts=runtime.settings.installation_hosts,
            )
            if changed:
                audit(
                    session,
                    principal,
                    action="program.settings_updated",
                    subject_kind="program",
                    subject_id=program_id,
                    program_id=program_id,
                    details={"changed": changed},
                )
            return settings_out(program_settings.get(session, program_id))
    except SettingsInvalid as error:
        return settings_problem(error)
