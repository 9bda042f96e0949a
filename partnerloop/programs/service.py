"""Programs: the merchant's affiliate program and its default terms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.core import money
from partnerloop.core.crypto import hash_token, new_token
from partnerloop.core.errors import InvalidInput, NotFound
from partnerloop.core.ids import new_id
from partnerloop.programs.models import Program

COMMISSION_TYPES = ("percentage", "fixed")
MAX_COOKIE_DAYS = 3650
MAX_HOLD_DAYS = 3650

# A DNS host name: labels of letters, digits and hyphens. No scheme, port or path.
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


@dataclass(frozen=True)
class CommissionTerms:
    """A commission rule as stored: a percentage rate or a fixed amount."""

    type: str
    rate: str | None = None
    amount_minor: int | None = None


@dataclass(frozen=True)
class CreatedProgram:
    program: Program
    postback_token: str  # shown once


def parse_commission_terms(
    type_: str, value: str, *, currency: str, field: str = "commission"
) -> CommissionTerms:
    if type_ not in COMMISSION_TYPES:
        raise InvalidInput(
            f"Commission type must be 'percentage' or 'fixed', not {type_!r}.",
            code="invalid_commission_type",
            field=f"{field}.type",
        )
    try:
        if type_ == "percentage":
            return CommissionTerms(type="percentage", rate=str(money.parse_rate(value)))
        return CommissionTerms(type="fixed", amount_minor=money.parse_amount(value, currency))
    except money.MoneyError as error:
        raise InvalidInput(error.reason, code=error.code, field=f"{field}.value") from None


def normalise_domains(domains: list[str]) -> list[str]:
    cleaned: list[str] = []
    for position, raw in enumerate(domains):
        host = raw.strip().lower().rstrip(".")
        if host.startswith("*."):
            host = host[2:]  # subdomains are always allowed; '*.' says the same thing
        if not _HOST_RE.match(host) or "." not in host:
            raise InvalidInput(
                f"{raw!r} is not a domain name; give the bare host, e.g. shop.example.com.",
                code="invalid_domain",
                field=f"allowed_domains[{position}]",
            )
        if host not in cleaned:
            cleaned.append(host)
    if not cleaned:
        raise InvalidInput(
            "Give at least one domain that links may send shoppers to.",
            code="invalid_domain",
            field="allowed_domains",
        )
    return cleaned


def create(
    session: Session,
    *,
    name: str,
    currency: str,
    cookie_days: int,
    allowed_domains: list[str],
    commission_type: str,
    commission_value: str,
    hold_days: int,
    now: datetime,
    recurring_commission: bool = False,
) -> CreatedProgram:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput(
            "Give the program a name of 1 to 200 characters.", code="invalid_name", field="name"
        )
    try:
        money.check_currency(currency)
    except money.MoneyError as error:
        raise InvalidInput(error.reason, code=error.code, field="currency") from None
    if not 1 <= cookie_days <= MAX_COOKIE_DAYS:
        raise InvalidInput(
            f"cookie_days must be between 1 and {MAX_COOKIE_DAYS}.",
            code="invalid_cookie_days",
            field="cookie_days",
        )
    if not 0 <= hold_days <= MAX_HOLD_DAYS:
        raise InvalidInput(
            f"hold_days must be between 0 and {MAX_HOLD_DAYS}.",
            code="invalid_hold_days",
            field="hold_days",
        )
    terms = parse_commission_terms(commission_type, commission_value, currency=currency)
    token = new_token(24)
    program = Program(
        id=new_id("program"),
        name=name,
        currency=currency,
        cookie_days=cookie_days,
        allowed_domains=normalise_domains(allowed_domains),
        commission_type=terms.type,
        commission_rate=terms.rate,
        commission_amount_minor=terms.amount_minor,
        hold_days=hold_days,
        recurring_commission=recurring_commission,
        postback_token_hash=hash_token(token),
        created_at=now,
    )
    session.add(program)
    session.flush()
    return CreatedProgram(program=program, postback_token=token)


def get_or_raise(session: Session, program_id: str, *, field: str = "program_id") -> Program:
    program = session.get(Program, program_id)
    if program is None:
        raise NotFound(f"No program {program_id}.", code="program_not_found", field=field)
    return program


def list_programs(session: Session, *, program_id: str | None = None) -> list[Program]:
    query = select(Program).order_by(Program.id)
    if program_id is not None:
        query = query.where(Program.id == program_id)
    return list(session.scalars(query))


def find_by_postback_token(session: Session, token: str) -> Program | None:
    return session.scalar(select(Program).where(Program.postback_token_hash == hash_token(token)))


def rotate_postback_token(session: Session, *, program_id: str) -> str:
    program = get_or_raise(session, program_id)
    token = new_token(24)
    program.postback_token_hash = hash_token(token)
    return token


def terms_of(program: Program) -> CommissionTerms:
    return CommissionTerms(
        type=program.commission_type,
        rate=program.commission_rate,
        amount_minor=program.commission_amount_minor,
    )
