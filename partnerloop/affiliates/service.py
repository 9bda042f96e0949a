"""Affiliates: sign-up, approval, program enrollment and commission overrides.

E-mail and name are personal data: stored encrypted, found by blind index,
and never put in a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.affiliates.models import Affiliate, Enrollment
from partnerloop.core.crypto import FieldCipher, looks_like_email, normalise_email
from partnerloop.core.errors import Conflict, InvalidInput, NotFound
from partnerloop.core.ids import new_id
from partnerloop.programs import service as programs
from partnerloop.programs.service import CommissionTerms, parse_commission_terms
from partnerloop.sync import service as sync

STATUSES = ("pending", "approved", "rejected", "suspended")

EMAIL_FIELD = "affiliate.email"
NAME_FIELD = "affiliate.name"


@dataclass(frozen=True)
class SignUp:
    affiliate: Affiliate
    created: bool  # False: the e-mail was known; the affiliate was (re)enrolled


def check_email(email: str, *, field: str = "email") -> str:
    cleaned = normalise_email(email)
    if not looks_like_email(cleaned):
        raise InvalidInput("That is not an e-mail address.", code="invalid_email", field=field)
    return cleaned


def find_by_email(session: Session, cipher: FieldCipher, email: str) -> Affiliate | None:
    index = cipher.blind_index(normalise_email(email), field=EMAIL_FIELD)
    return session.scalar(select(Affiliate).where(Affiliate.email_index == index))


def sign_up(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    email: str,
    name: str,
    now: datetime,
) -> SignUp:
    programs.get_or_raise(session, program_id)
    cleaned = check_email(email)
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("Give a name of 1 to 200 characters.", code="invalid_name", field="name")
    affiliate = find_by_email(session, cipher, cleaned)
    created = affiliate is None
    if affiliate is None:
        affiliate = Affiliate(
            id=new_id("affiliate"),
            email_enc=cipher.encrypt(cleaned, field=EMAIL_FIELD),
            email_index=cipher.blind_index(cleaned, field=EMAIL_FIELD),
            name_enc=cipher.encrypt(name, field=NAME_FIELD),
            status="pending",
            created_at=now,
            status_changed_at=now,
        )
        session.add(affiliate)
        session.flush()
    if enrollment_of(session, program_id=program_id, affiliate_id=affiliate.id) is None:
        session.add(
            Enrollment(
                id=new_id("enrollment"),
                program_id=program_id,
                affiliate_id=affiliate.id,
                created_at=now,
            )
        )
        session.flush()
    return SignUp(affiliate=affiliate, created=created)


def get_or_raise(
    session: Session, affiliate_id: str, *, program_id: str | None = None
) -> Affiliate:
    """The affiliate; with program_id, only if enrolled in that program (else not found)."""
    affiliate = session.get(Affiliate, affiliate_id)
    if (
        affiliate is not None
        and program_id is not None
        and enrollment_of(session, program_id=program_id, affiliate_id=affiliate_id) is None
    ):
        affiliate = None
    if affiliate is None:
        raise NotFound(
            f"No affiliate {affiliate_id}.", code="affiliate_not_found", field="affiliate_id"
        )
    return affiliate


def enrollment_of(session: Session, *, program_id: str, affiliate_id: str) -> Enrollment | None:
    return session.scalar(
        select(Enrollment).where(
            Enrollment.program_id == program_id, Enrollment.affiliate_id == affiliate_id
        )
    )


def program_ids_of(session: Session, affiliate_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Enrollment.program_id)
            .where(Enrollment.affiliate_id == affiliate_id)
            .order_by(Enrollment.program_id)
        )
    )


def list_affiliates(
    session: Session,
    *,
    program_id: str | None,
    status: str | None,
    after: str | None,
    limit: int,
) -> list[Affiliate]:
    query = select(Affiliate).order_by(Affiliate.id).limit(limit)
    if program_id is not None:
        query = query.join(Enrollment, Enrollment.affiliate_id == Affiliate.id).where(
            Enrollment.program_id == program_id
        )
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(STATUSES)}.",
                code="invalid_status",
                field="status",
            )
        query = query.where(Affiliate.status == status)
    if after is not None:
        query = query.where(Affiliate.id > after)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Member:
    """An affiliate as a member of one program: the person and their enrollment."""

    affiliate: Affiliate
    enrollment: Enrollment


def list_members(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    status: str | None = None,
    email: str | None = None,
    after: str | None = None,
    limit: int,
) -> list[Member]:
    """A program's affiliates, oldest first (ids sort by creation), with their
    enrollment; `email` finds one by its blind index (exact match, any case)."""
    query = (
        select(Affiliate, Enrollment)
        .join(Enrollment, Enrollment.affiliate_id == Affiliate.id)
        .where(Enrollment.program_id == program_id)
        .order_by(Affiliate.id)
        .limit(limit)
    )
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(STATUSES)}.",
                code="invalid_status",
                field="status",
            )
        query = query.where(Affiliate.status == status)
    if email is not None and email.strip():
        index = cipher.blind_index(normalise_email(email), field=EMAIL_FIELD)
        query = query.where(Affiliate.email_index == index)
    if after is not None:
        query = query.where(Affiliate.id > after)
    return [Member(affiliate, enrollment) for affiliate, enrollment in session.execute(query)]


def member_or_raise(session: Session, *, program_id: str, affiliate_id: str) -> Member:
    """One affiliate of this program (not found if they are not a member)."""
    affiliate = session.get(Affiliate, affiliate_id)
    enrollment = enrollment_of(session, program_id=program_id, affiliate_id=affiliate_id)
    if affiliate is None or enrollment is None:
        raise NotFound(
            f"No affiliate {affiliate_id}.", code="affiliate_not_found", field="affiliate_id"
        )
    return Member(affiliate, enrollment)


def names_by_id(session: Session, cipher: FieldCipher, ids: Iterable[str]) -> dict[str, str]:
    """Decrypted names of these affiliates (for tables that list many)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.execute(select(Affiliate.id, Affiliate.name_enc).where(Affiliate.id.in_(wanted)))
    return {row_id: cipher.decrypt(name_enc, field=NAME_FIELD) for row_id, name_enc in rows}


# Which statuses each transition may start from. Approving an approved affiliate
# is a no-op (safe to retry); anything else outside this table is a conflict.
_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "approved": ("pending", "suspended", "rejected"),
    "rejected": ("pending",),
    "suspended": ("approved",),
}


def _transition(
    session: Session,
    cipher: FieldCipher,
    *,
    affiliate_id: str,
    to: str,
    program_id: str | None,
    now: datetime,
) -> Affiliate:
    affiliate = get_or_raise(session, affiliate_id, program_id=program_id)
    if affiliate.status == to:
        return affiliate
    if affiliate.status not in _TRANSITIONS[to]:
        raise Conflict(
            f"An affiliate who is {affiliate.status} cannot become {to}.",
            code="invalid_transition",
            field="status",
        )
    affiliate.status = to
    affiliate.status_changed_at = now
    # Announced to each program the affiliate belongs to (no personal data in it:
    # subscribers read name and e-mail through the API if they need them).
    for enrollment in session.scalars(
        select(Enrollment).where(Enrollment.affiliate_id == affiliate.id).order_by(Enrollment.id)
    ):
        sync.publish(
            session,
            cipher,
            program_id=enrollment.program_id,
            topic=f"affiliate.{to}",
            data={"id": affiliate.id, "status": to},
            key=f"{affiliate.id}:{to}:{now.isoformat()}",
            now=now,
        )
    return affiliate


def approve(
    session: Session,
    cipher: FieldCipher,
    *,
    affiliate_id: str,
    program_id: str | None,
    now: datetime,
) -> Affiliate:
    return _transition(
        session, cipher, affiliate_id=affiliate_id, to="approved", program_id=program_id, now=now
    )


def reject(
    session: Session,
    cipher: FieldCipher,
    *,
    affiliate_id: str,
    program_id: str | None,
    now: datetime,
) -> Affiliate:
    return _transition(
        session, cipher, affiliate_id=affiliate_id, to="rejected", program_id=program_id, now=now
    )


def suspend(
    session: Session,
    cipher: FieldCipher,
    *,
    affiliate_id: str,
    program_id: str | None,
    now: datetime,
) -> Affiliate:
    return _transition(
        session, cipher, affiliate_id=affiliate_id, to="suspended", program_id=program_id, now=now
    )


def set_commission_override(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str,
    commission_type: str | None,
    commission_value: str | None,
) -> Enrollment:
    """Give one affiliate other terms than the program's default; None clears it."""
    program = programs.get_or_raise(session, program_id)
    enrollment = enrollment_of(session, program_id=program_id, affiliate_id=affiliate_id)
    if enrollment is None:
        raise NotFound(
            f"No affiliate {affiliate_id}.", code="affiliate_not_found", field="affiliate_id"
        )
    if commission_type is None:
        enrollment.commission_type = enrollment.commission_rate = None
        enrollment.commission_amount_minor = None
        return enrollment
    terms = parse_commission_terms(
        commission_type, commission_value or "", currency=program.currency
    )
    enrollment.commission_type = terms.type
    enrollment.commission_rate = terms.rate
    enrollment.commission_amount_minor = terms.amount_minor
    return enrollment


def override_terms(enrollment: Enrollment | None) -> CommissionTerms | None:
    if enrollment is None or enrollment.commission_type is None:
        return None
    return CommissionTerms(
        type=enrollment.commission_type,
        rate=enrollment.commission_rate,
        amount_minor=enrollment.commission_amount_minor,
    )


@dataclass(frozen=True)
class AffiliateView:
    id: str
    email: str
    name: str
    status: str
    program_ids: list[str]
    created_at: datetime


def view(session: Session, cipher: FieldCipher, affiliate: Affiliate) -> AffiliateView:
    return AffiliateView(
        id=affiliate.id,
        email=cipher.decrypt(affiliate.email_enc, field=EMAIL_FIELD),
        name=cipher.decrypt(affiliate.name_enc, field=NAME_FIELD),
        status=affiliate.status,
        program_ids=program_ids_of(session, affiliate.id),
        created_at=affiliate.created_at,
    )
