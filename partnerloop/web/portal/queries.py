"""What the portal reads for one affiliate in one program. Every query here is
bounded by both ids: nothing an affiliate can name reaches another's rows.

Reads only; they live beside the pages because they shape pages (newest
first, bounded), while the domains' list functions serve the cursor API.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.analytics.models import DailyStats
from partnerloop.commissions.models import Commission
from partnerloop.core.clock import utcnow
from partnerloop.core.errors import InvalidInput
from partnerloop.tracking.models import Coupon, Link

DEFAULT_DAYS = 30
MAX_DAYS = 366
LINKS_SHOWN = 200
RECENT_COMMISSIONS = 10
PAID_SHOWN = 100


def period(day_from: date | None, day_to: date | None) -> tuple[date, date]:
    """The days a dashboard shows: by default the last 30 (today included)."""
    last = day_to or utcnow().date()
    first = day_from or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput("from must not be after to.", code="invalid_period", field="from")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(
            f"Choose a period of at most {MAX_DAYS} days.", code="invalid_period", field="from"
        )
    return first, last


def daily_rows(
    session: Session, *, program_id: str, affiliate_id: str, day_from: date, day_to: date
) -> list[DailyStats]:
    """The rollup rows of the period, newest day first (days without activity have none)."""
    return list(
        session.scalars(
            select(DailyStats)
            .where(
                DailyStats.program_id == program_id,
                DailyStats.affiliate_id == affiliate_id,
                DailyStats.day >= day_from,
                DailyStats.day <= day_to,
            )
            .order_by(DailyStats.day.desc())
        )
    )


def recent_commissions(
    session: Session, *, program_id: str, affiliate_id: str, limit: int = RECENT_COMMISSIONS
) -> list[Commission]:
    return list(
        session.scalars(
            select(Commission)
            .where(Commission.program_id == program_id, Commission.affiliate_id == affiliate_id)
            .order_by(Commission.created_at.desc(), Commission.id.desc())
            .limit(limit)
        )
    )


def paid_commissions(
    session: Session, *, program_id: str, affiliate_id: str, limit: int = PAID_SHOWN
) -> list[Commission]:
    return list(
        session.scalars(
            select(Commission)
            .where(
                Commission.program_id == program_id,
                Commission.affiliate_id == affiliate_id,
                Commission.state == "paid",
            )
            .order_by(Commission.paid_at.desc(), Commission.id.desc())
            .limit(limit)
        )
    )


def links_of(
    session: Session, *, program_id: str, affiliate_id: str, limit: int = LINKS_SHOWN
) -> list[Link]:
    """Newest first (ids sort by creation time)."""
    return list(
        session.scalars(
            select(Link)
            .where(Link.program_id == program_id, Link.affiliate_id == affiliate_id)
            .order_by(Link.id.desc())
            .limit(limit)
        )
    )


def link_of(session: Session, *, program_id: str, affiliate_id: str, link_id: str) -> Link | None:
    """The link only if it is this affiliate's, in this program."""
    link = session.get(Link, link_id)
    if link is None or link.program_id != program_id or link.affiliate_id != affiliate_id:
        return None
    return link


def coupons_of(session: Session, *, program_id: str, affiliate_id: str) -> list[Coupon]:
    return list(
        session.scalars(
            select(Coupon)
            .where(Coupon.program_id == program_id, Coupon.affiliate_id == affiliate_id)
            .order_by(Coupon.code)
        )
    )
