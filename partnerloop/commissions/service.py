"""Commission lifecycle: created pending, approved (by hand or after the hold
period), paid; declined by review; reduced or reversed by refunds.

Every state change moves the amount between the rollup's state buckets in the
same transaction and announces itself through the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from partnerloop.affiliates import service as affiliates
from partnerloop.affiliates.models import Affiliate
from partnerloop.analytics import service as analytics
from partnerloop.commissions.models import Commission
from partnerloop.commissions.rules import Rule, amount_for
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import insert_if_absent
from partnerloop.core.errors import Conflict, InvalidInput, NotFound
from partnerloop.core.ids import new_id
from partnerloop.core.money import format_amount
from partnerloop.core.rows import as_inserted
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.programs.service import CommissionTerms
from partnerloop.sync import service as sync

STATES = ("pending", "approved", "paid", "declined", "reversed")


@dataclass(frozen=True)
class OrderFacts:
    """What a commission is computed from: the recorded conversion, in plain values."""

    conversion_id: str
    program_id: str
    order_id: str
    affiliate_id: str
    gross_minor: int
    refunded_minor: int
    currency: str
    day: date


def rule_from_terms(terms: CommissionTerms) -> Rule:
    if terms.type == "percentage":
        return Rule(type="percentage", value=Decimal(terms.rate or "0"))
    return Rule(type="fixed", value=Decimal(terms.amount_minor or 0))


def rule_for(session: Session, *, program: Program, affiliate_id: str) -> Rule:
    """The affiliate's own terms if the program gives them any, else the program's."""
    enrollment = affiliates.enrollment_of(session, program_id=program.id, affiliate_id=affiliate_id)
    terms = affiliates.override_terms(enrollment) or programs.terms_of(program)
    return rule_from_terms(terms)


def event_data(commission: Commission) -> dict[str, object]:
    return {
        "id": commission.id,
        "conversion_id": commission.conversion_id,
        "order_id": commission.order_id,
        "affiliate_id": commission.affiliate_id,
        "amount": format_amount(commission.amount_minor, commission.currency),
        "currency": commission.currency,
        "state": commission.state,
    }


def _announce(
    session: Session, cipher: FieldCipher, commission: Commission, topic: str, now: datetime
) -> None:
    sync.publish(
        session,
        cipher,
        program_id=commission.program_id,
        topic=topic,
        data=event_data(commission),
        key=f"{commission.id}:{commission.state}:{commission.amount_minor}",
        now=now,
    )


def create_for_order(
    session: Session, cipher: FieldCipher, *, facts: OrderFacts, now: datetime
) -> list[Commission]:
    """The commission an attributed order earns. Idempotent per (conversion, affiliate, tier)."""
    program = programs.get_or_raise(session, facts.program_id)
    affiliate = session.get(Affiliate, facts.affiliate_id)
    if affiliate is None or affiliate.status != "approved":
        # Attribution still names them; a suspended or pending affiliate earns nothing.
        return []
    rule = rule_for(session, program=program, affiliate_id=facts.affiliate_id)
    amount = amount_for(
        rule, gross_minor=facts.gross_minor, net_minor=facts.gross_minor - facts.refunded_minor
    )
    commission_id = new_id("commission")
    values: dict[str, Any] = {
        "id": commission_id,
        "program_id": facts.program_id,
        "conversion_id": facts.conversion_id,
        "order_id": facts.order_id,
        "affiliate_id": facts.affiliate_id,
        "tier": 0,
        "state": "pending",
        "rule_type": rule.type,
        "rule_value": rule.stored_value(),
        "base_amount_minor": facts.gross_minor,
        "original_amount_minor": amount,
        "amount_minor": amount,
        "currency": facts.currency,
        "clawback_minor": 0,
        "stats_day": facts.day,
        "hold_until": now + timedelta(days=program.hold_days),
        "created_at": now,
        "updated_at": now,
    }
    inserted = insert_if_absent(
        session,
        Commission.__table__,  # type: ignore[arg-type]
        values,
        conflict_columns=("conversion_id", "affiliate_id", "tier"),
    )
    if not inserted:
        return list_for_conversion(session, facts.conversion_id)
    commission = as_inserted(session, Commission, values)
    analytics.commission_moved(
        session,
        program_id=commission.program_id,
        affiliate_id=commission.affiliate_id,
        day=commission.stats_day,
        amount_minor=amount,
        from_state=None,
        to_state="pending",
    )
    _announce(session, cipher, commission, "commission.created", now)
    return [commission]


def list_for_conversion(session: Session, conversion_id: str) -> list[Commission]:
    return list(
        session.scalars(
            select(Commission)
            .where(Commission.conversion_id == conversion_id)
            .order_by(Commission.id)
        )
    )


def recompute(
    session: Session,
    cipher: FieldCipher,
    *,
    conversion_id: str,
    gross_minor: int,
    refunded_minor: int,
    now: datetime,
) -> None:
    """Recompute an order's commissions after its amount or refunded total changed.

    Unpaid commissions follow the order (down to zero, which reverses them, or
    up, when a shop edits an order upwards before payment); the difference
    moves between the rollup's buckets. A paid commission cannot shrink: the
    difference becomes a clawback, owed back and netted by the next payout.
    """
    for commission in list_for_conversion(session, conversion_id):
        if commission.state in ("declined", "reversed"):
            continue
        rule = Rule.from_stored(commission.rule_type, commission.rule_value)
        target = amount_for(rule, gross_minor=gross_minor, net_minor=gross_minor - refunded_minor)
        owed = commission.amount_minor - commission.clawback_minor
        delta = owed - target
        if delta == 0 or (delta < 0 and commission.state == "paid"):
            continue
        bucket = commission.state
        commission.base_amount_minor = gross_minor
        if commission.state == "paid":
            commission.clawback_minor += delta
            increments = {"commission_reversed_minor": delta}
        elif delta > 0:
            commission.amount_minor -= delta
            increments = {f"commission_{bucket}_minor": -delta, "commission_reversed_minor": delta}
        else:
            commission.amount_minor -= delta
            increments = {f"commission_{bucket}_minor": -delta}
        analytics.add(
            session,
            program_id=commission.program_id,
            affiliate_id=commission.affiliate_id,
            day=commission.stats_day,
            increments=increments,
        )
        commission.updated_at = now
        topic = "commission.adjusted"
        if commission.amount_minor == 0 and commission.state != "paid":
            commission.state = "reversed"
            commission.reversed_at = now
            topic = "commission.reversed"
        _announce(session, cipher, commission, topic, now)


def get_or_raise(session: Session, commission_id: str, *, program_id: str | None) -> Commission:
    commission = session.get(Commission, commission_id)
    if commission is None or (program_id is not None and commission.program_id != program_id):
        raise NotFound(f"No commission {commission_id}.", code="commission_not_found")
    return commission


_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "approved": ("pending",),
    "declined": ("pending", "approved"),
    "paid": ("approved",),
}


def _transition(
    session: Session,
    cipher: FieldCipher,
    *,
    commission_id: str,
    to: str,
    program_id: str | None,
    now: datetime,
) -> Commission:
    commission = get_or_raise(session, commission_id, program_id=program_id)
    if commission.state == to:
        return commission  # retrying an approval is safe
    if commission.state not in _TRANSITIONS[to]:
        raise Conflict(
            f"A {commission.state} commission cannot become {to}.",
            code="invalid_transition",
            field="state",
        )
    _move(session, cipher, commission, to=to, now=now)
    return commission


def _move(
    session: Session, cipher: FieldCipher, commission: Commission, *, to: str, now: datetime
) -> None:
    analytics.commission_moved(
        session,
        program_id=commission.program_id,
        affiliate_id=commission.affiliate_id,
        day=commission.stats_day,
        amount_minor=commission.amount_minor,
        from_state=commission.state,
        to_state=to,
    )
    commission.state = to
    commission.updated_at = now
    setattr(commission, f"{to}_at", now)
    _announce(session, cipher, commission, f"commission.{to}", now)


def approve(
    session: Session,
    cipher: FieldCipher,
    *,
    commission_id: str,
    program_id: str | None,
    now: datetime,
) -> Commission:
    return _transition(
        session, cipher, commission_id=commission_id, to="approved", program_id=program_id, now=now
    )


def decline(
    session: Session,
    cipher: FieldCipher,
    *,
    commission_id: str,
    program_id: str | None,
    now: datetime,
    reason: str | None = None,
) -> Commission:
    commission = _transition(
        session, cipher, commission_id=commission_id, to="declined", program_id=program_id, now=now
    )
    if reason is not None and reason.strip():
        commission.decline_reason = reason.strip()[:1000]
    return commission


def mark_paid(
    session: Session,
    cipher: FieldCipher,
    *,
    commission_id: str,
    program_id: str | None,
    now: datetime,
) -> Commission:
    return _transition(
        session, cipher, commission_id=commission_id, to="paid", program_id=program_id, now=now
    )


def approve_due(session: Session, cipher: FieldCipher, *, now: datetime, limit: int = 500) -> int:
    """Approve pending commissions whose hold period is over. Safe to run in many
    workers at once: each row is claimed with SKIP LOCKED and moved only if it is
    still pending, so no amount moves between rollup buckets twice."""
    due = list(
        session.scalars(
            select(Commission)
            .where(Commission.state == "pending", Commission.hold_until <= now)
            .order_by(Commission.hold_until)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    moved = 0
    for commission in due:
        result = session.execute(
            update(Commission)
            .where(Commission.id == commission.id, Commission.state == "pending")
            .values(updated_at=now)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue
        session.refresh(commission)
        _move(session, cipher, commission, to="approved", now=now)
        moved += 1
    return moved


def list_commissions(
    session: Session,
    *,
    program_id: str | None,
    affiliate_id: str | None,
    state: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    after: str | None,
    limit: int,
) -> list[Commission]:
    query = select(Commission).order_by(Commission.id).limit(limit)
    if program_id is not None:
        query = query.where(Commission.program_id == program_id)
    if affiliate_id is not None:
        query = query.where(Commission.affiliate_id == affiliate_id)
    if state is not None:
        if state not in STATES:
            raise InvalidInput(
                f"state must be one of {', '.join(STATES)}.", code="invalid_state", field="state"
            )
        query = query.where(Commission.state == state)
    if created_from is not None:
        query = query.where(Commission.created_at >= created_from)
    if created_to is not None:
        query = query.where(Commission.created_at < created_to)
    if after is not None:
        query = query.where(Commission.id > after)
    return list(session.scalars(query))
