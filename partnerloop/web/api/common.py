"""Small helpers the API routes share: money and date parsing, shared shapes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from partnerloop.access.service import Principal
from partnerloop.audit import service as audit_log
from partnerloop.audit.service import Actor
from partnerloop.core import money
from partnerloop.core.clock import utcnow
from partnerloop.core.errors import InvalidInput

AMOUNT_DOC = 'Decimal string in the currency\'s units, e.g. "19.99". Never a JSON number.'
CURRENCY_DOC = "ISO 4217 code, e.g. EUR."


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code.")
    field: str | None = Field(default=None, description="The request field at fault, if one is.")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Malformed request"},
    401: {"model": Problem, "description": "Missing or invalid API key"},
    403: {"model": Problem, "description": "The key's scope does not allow this"},
    404: {"model": Problem, "description": "Not found (or not visible to this key)"},
    409: {"model": Problem, "description": "Conflicts with the current state"},
    422: {"model": Problem, "description": "Invalid input; `field` names the culprit"},
}


def parse_money(
    amount: str, currency: str, *, amount_field: str = "amount", currency_field: str = "currency"
) -> int:
    try:
        money.check_currency(currency)
    except money.MoneyError as error:
        raise InvalidInput(error.reason, code=error.code, field=currency_field) from None
    try:
        return money.parse_amount(amount, currency)
    except money.MoneyError as error:
        raise InvalidInput(error.reason, code=error.code, field=amount_field) from None


def parse_moment(value: str | None, *, field: str, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD, whole UTC day) or an ISO 8601 datetime. With end=True a
    date means 'through the end of that day'."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{field} must be a date (YYYY-MM-DD) or an ISO 8601 date-time.",
            code="invalid_date",
            field=field,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_day(value: str | None, *, field: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value[:10]) if len(value) >= 10 else date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{field} must be a date (YYYY-MM-DD).", code="invalid_date", field=field
        ) from None


def audit(
    session: Session,
    principal: Principal,
    *,
    action: str,
    subject_kind: str,
    subject_id: str,
    program_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a change made through the API in the audit log, in the caller's
    transaction. Details carry ids and settings, never personal data."""
    audit_log.record(
        session,
        Actor(principal.actor_kind, principal.key_id),
        action=action,
        subject_kind=subject_kind,
        subject_id=subject_id,
        program_id=program_id,
        now=utcnow(),
        details=details,
    )
