"""Rollups maintained on write, and the stats read from them.

Every change that moves a figure (a click, a conversion, a refund, a
commission changing state) adds to its day's row in the same transaction as
the change itself, so the rollup and the facts cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from partnerloop.analytics.models import DailyStats
from partnerloop.core.db import upsert_add

COMMISSION_STATES = ("pending", "approved", "paid", "reversed", "declined")

_STATE_COLUMN = {state: f"commission_{state}_minor" for state in COMMISSION_STATES}


def add(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str | None,
    day: date,
    increments: Mapping[str, int],
) -> None:
    changes = {name: value for name, value in increments.items() if value}
    if not changes:
        return
    upsert_add(
        session,
        DailyStats.__table__,  # type: ignore[arg-type]
        key={"program_id": program_id, "affiliate_id": affiliate_id or "", "day": day},
        increments=changes,
    )


def commission_moved(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str,
    day: date,
    amount_minor: int,
    from_state: str | None,
    to_state: str,
) -> None:
    """Move an amount between commission-state buckets (None: a new commission)."""
    increments: dict[str, int] = {_STATE_COLUMN[to_state]: amount_minor}
    if from_state is not None:
        increments[_STATE_COLUMN[from_state]] = (
            increments.get(_STATE_COLUMN[from_state], 0) - amount_minor
        )
    add(session, program_id=program_id, affiliate_id=affiliate_id, day=day, increments=increments)


@dataclass(frozen=True)
class Stats:
    clicks: int
    unique_clicks: int
    conversions: int
    revenue_minor: int
    commissions_minor: dict[str, int]


def stats(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str | None,
    day_from: date | None,
    day_to: date | None,
) -> Stats:
    columns = [
        DailyStats.clicks,
        DailyStats.unique_clicks,
        DailyStats.conversions,
        DailyStats.revenue_minor,
        *(getattr(DailyStats, _STATE_COLUMN[state]) for state in COMMISSION_STATES),
    ]
    query = select(*(func.coalesce(func.sum(column), 0) for column in columns)).where(
        DailyStats.program_id == program_id
    )
    if affiliate_id is not None:
        query = query.where(DailyStats.affiliate_id == affiliate_id)
    if day_from is not None:
        query = query.where(DailyStats.day >= day_from)
    if day_to is not None:
        query = query.where(DailyStats.day <= day_to)
    row = session.execute(query).one()
    values = [int(value) for value in row]
    return Stats(
        clicks=values[0],
        unique_clicks=values[1],
        conversions=values[2],
        revenue_minor=values[3],
        commissions_minor=dict(zip(COMMISSION_STATES, values[4:], strict=True)),
    )
