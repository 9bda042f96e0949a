"""The recent window: per program and affiliate, the figures of every day from
the window's first day on (RecentStats), so the dashboard's default period,
the last 30 days, ranks its affiliates from one row each instead of adding up
a few spans per affiliate (see spans.cover): its cost stays flat as traffic
grows, whatever the calendar does to the spans.

Writes add to a row only days from its first_day on (core.db's `since`).
Once a day the worker moves every row's first_day to the new window's first
day, taking away (or adding) the days in between from DailyStats: `roll`.
A page reads the window only when every row of the program starts on its
period's first day (see `covers`); otherwise (the roll not done yet, or a
period other than the window) it adds up spans as before, which is exact too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, func, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from partnerloop.analytics.models import FIGURES, DailyStats, RecentStats
from partnerloop.core.db import upsert_add_statements

WINDOW_DAYS = 30
# How often the worker looks for rows to move (one indexed query when there are none).
ROLL_CHECK_SECONDS = 60.0

_RECENT: Table = RecentStats.__table__  # type: ignore[assignment]
_DAILY: Table = DailyStats.__table__  # type: ignore[assignment]


def window_first_day(today: date) -> date:
    return today - timedelta(days=WINDOW_DAYS - 1)


def statements(
    dialect: Dialect, daily: dict[tuple[str, date, str], list[int]]
) -> list[tuple[str, Any]]:
    """The upserts adding a batch's per-day sums (program, day, affiliate ->
    FIGURES amounts) to the recent rows; unattributed ('') sums have none.

    A row takes a day only from its first_day on, so one statement carries one
    day per affiliate: an affiliate with sums on several days in the batch
    (rare: a click batch is one day) is spread over as many statements."""
    per_affiliate: dict[tuple[str, str], list[tuple[date, list[int]]]] = {}
    for (program_id, day, affiliate_id), amounts in sorted(daily.items()):
        if affiliate_id and any(amounts):
            per_affiliate.setdefault((program_id, affiliate_id), []).append((day, amounts))
    # Keys in order, as the other rollups: two writers lock rows in the same order.
    in_order = sorted(per_affiliate.items())
    found: list[tuple[str, Any]] = []
    round_ = 0
    while True:
        rows = [
            (program_id, affiliate_id, days[round_][0], *days[round_][1])
            for (program_id, affiliate_id), days in in_order
            if round_ < len(days)
        ]
        if not rows:
            return found
        found += upsert_add_statements(
            dialect,
            _RECENT,
            key=("program_id", "affiliate_id"),
            since="first_day",
            counters=FIGURES,
            rows=rows,
        )
        round_ += 1


def roll(session: Session, *, first_day: date) -> int:
    """Move every recent row to start on `first_day`: take away its days before
    it, add its days from it up to where the row started (DailyStats). Returns
    how many rows moved.

    On PostgreSQL the rows to move are locked first (FOR UPDATE), and the days
    are read after: a writer that added to a row before has committed by then
    and its days are read; one that comes after finds the new first_day and
    leaves out a day before it. A row inserted meanwhile is moved next time."""
    keys = session.execute(
        select(_RECENT.c.program_id, _RECENT.c.affiliate_id, _RECENT.c.first_day)
        .where(_starts_elsewhere(_RECENT, first_day))
        .order_by(_RECENT.c.program_id, _RECENT.c.affiliate_id)
        .with_for_update()
    ).all()
    if not keys:
        return 0
    moved = {(row[0], row[1]): row[2:] for row in session.execute(_deltas(first_day))}
    changes = []
    for program_id, affiliate_id, was in keys:
        deltas = moved.get((program_id, affiliate_id), (0,) * len(FIGURES))
        changes.append(
            {
                "key_program": program_id,
                "key_affiliate": affiliate_id,
                "was": was,
                "first_day": first_day,
                **{
                    f"add_{name}": int(delta or 0)
                    for name, delta in zip(FIGURES, deltas, strict=True)
                },
            }
        )
    session.connection().execute(_MOVE, changes)
    return len(changes)


def _deltas(first_day: date) -> Any:
    """Per row to move: what its figures change by (days it stops counting
    negated, days it starts counting as they are)."""
    recent, daily = _RECENT.alias("r"), _DAILY.alias("d")
    # The days between the row's first day and the new one, whichever is earlier:
    # one range, so each row's days are one index range (an OR of two ranges
    # made SQLite read all of the program's days for every row).
    earlier = recent.c.first_day < first_day
    between = and_(
        daily.c.day >= case((earlier, recent.c.first_day), else_=first_day),
        daily.c.day < case((earlier, first_day), else_=recent.c.first_day),
    )
    sign = case((daily.c.day < first_day, -1), else_=1)
    return (
        select(
            recent.c.program_id,
            recent.c.affiliate_id,
            *(func.sum(sign * daily.c[name]) for name in FIGURES),
        )
        .join(
            daily,
            and_(
                daily.c.program_id == recent.c.program_id,
                daily.c.affiliate_id == recent.c.affiliate_id,
            ),
        )
        .where(_starts_elsewhere(recent, first_day), between)
        .group_by(recent.c.program_id, recent.c.affiliate_id)
    )


def _starts_elsewhere(table: Any, first_day: date) -> Any:
    # Two ranges rather than `!=`, so an index on first_day can serve them.
    return or_(table.c.first_day < first_day, table.c.first_day > first_day)


_MOVE = (
    update(_RECENT)
    .where(
        _RECENT.c.program_id == bindparam("key_program"),
        _RECENT.c.affiliate_id == bindparam("key_affiliate"),
        _RECENT.c.first_day == bindparam("was"),
    )
    .values(
        first_day=bindparam("first_day"),
        **{name: _RECENT.c[name] + bindparam(f"add_{name}") for name in FIGURES},
    )
)


def roll_due(session: Session, now: datetime) -> int:
    """The worker's periodic task: the window up to now's UTC day."""
    return roll(session, first_day=window_first_day(now.date()))


def covers(session: Session, *, program_id: str, first: date, last: date) -> bool:
    """Whether the program's recent rows are exactly its affiliates' figures
    for the days first..last: every row starts on `first` and no day after
    `last` has figures yet."""
    earliest, latest, later = session.execute(
        _CHECK, {"program_id": program_id, "last": last}
    ).one()
    return later is None and (earliest is None or earliest == latest == first)


def _first_day_of_program(pick: Any) -> Any:
    # min / max of the program's first days: one step into its index each.
    return (
        select(pick(_RECENT.c.first_day))
        .where(_RECENT.c.program_id == bindparam("program_id"))
        .scalar_subquery()
    )


# One round trip: the program's earliest and latest first day, and any day
# after the period with figures.
_CHECK = select(
    _first_day_of_program(func.min),
    _first_day_of_program(func.max),
    select(_DAILY.c.day)
    .where(_DAILY.c.program_id == bindparam("program_id"), _DAILY.c.day > bindparam("last"))
    .limit(1)
    .scalar_subquery(),
)
