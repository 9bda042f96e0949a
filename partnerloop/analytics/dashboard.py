"""The dashboard's figures for one program and a period of UTC days, read from
rollups maintained on write, never from the clicks table: the series and KPIs
from ProgramDailyStats (one row per day of the period), the affiliate table
from PeriodStats and DailyStats (a few rows per affiliate, see spans.cover).
The cost follows the number of days and of affiliates, not the traffic.

Money is in the program's currency, minor units. Commission amounts sit on the
day of the conversion they came from, in the state they are in now, so "paid in
the period" means: paid commissions on conversions made in the period.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, or_, select
from sqlalchemy.orm import Session

from partnerloop.analytics import recent, spans
from partnerloop.analytics.models import FIGURES, ProgramDailyStats, RecentStats
from partnerloop.analytics.service import (
    COMMISSION_STATES,
    Shape,
    Stats,
    bounds_of,
    covering_rows,
    shape_of,
    stats_of,
    without_parallel_workers,
)
from partnerloop.core.errors import InvalidInput

DEFAULT_PERIOD_DAYS = 30
# A year and a leap day: the longest period one page (and one query) covers.
MAX_PERIOD_DAYS = 366
# Rates are percentages shown with two decimals, rounded once, half to even
# (the rounding rule of partnerloop.core.money, applied to a rate).
RATE_QUANTUM = Decimal("0.01")
# Commission that is or will be the affiliate's: what "commission" sorts and sums by.
EARNED_STATES = ("pending", "approved", "paid")


@dataclass(frozen=True)
class Period:
    first: date
    last: date  # inclusive

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=offset) for offset in range(self.days)]


def default_period(today: date) -> Period:
    return Period(today - timedelta(days=DEFAULT_PERIOD_DAYS - 1), today)


def _day(text: str, *, field: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{field} must be a date written YYYY-MM-DD.", code="invalid_date", field=field
        ) from None


def parse_period(first: str | None, last: str | None, *, today: date) -> Period:
    """?from=&to= as given on a page: missing `to` is today, missing `from` is the
    30 days up to `to`; `from` after `to` or more than MAX_PERIOD_DAYS is refused."""
    end = _day(last.strip(), field="to") if last and last.strip() else today
    start = (
        _day(first.strip(), field="from")
        if first and first.strip()
        else end - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    )
    if start > end:
        raise InvalidInput(
            "The period must start on or before its last day.", code="invalid_period", field="from"
        )
    period = Period(start, end)
    if period.days > MAX_PERIOD_DAYS:
        raise InvalidInput(
            f"A period may span at most {MAX_PERIOD_DAYS} days; this one spans {period.days}.",
            code="period_too_long",
            field="from",
        )
    return period


def rate_percent(part: int, whole: int) -> Decimal | None:
    """part / whole as a percentage, rounded once to RATE_QUANTUM; None without a whole."""
    if whole <= 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def conversion_rate(stats: Stats) -> Decimal | None:
    """Conversions per unique click, in percent. Unattributed orders count as
    conversions too, so a program can convert above 100 %."""
    return rate_percent(stats.conversions, stats.unique_clicks)


def earned_minor(stats: Stats) -> int:
    return sum(stats.commissions_minor[state] for state in EARNED_STATES)


def zero() -> Stats:
    return stats_of([0] * len(FIGURES))


def add_up(many: Iterable[Stats]) -> Stats:
    rows = [_as_row(stats) for stats in many]
    if not rows:
        return zero()
    return stats_of([sum(column) for column in zip(*rows, strict=True)])


def _as_row(stats: Stats) -> list[int]:
    return [
        stats.clicks,
        stats.unique_clicks,
        stats.conversions,
        stats.revenue_minor,
        *(stats.commissions_minor[state] for state in COMMISSION_STATES),
    ]


@dataclass(frozen=True)
class Day:
    day: date
    stats: Stats


def daily(session: Session, *, program_id: str, period: Period) -> list[Day]:
    """Every day of the period (days without a row are zeros): the program's
    day rows, one per day."""
    found = {
        row[0]: stats_of(row[1:])
        for row in session.execute(
            select(
                ProgramDailyStats.day, *(getattr(ProgramDailyStats, name) for name in FIGURES)
            ).where(
                ProgramDailyStats.program_id == program_id,
                ProgramDailyStats.day >= period.first,
                ProgramDailyStats.day <= period.last,
            )
        )
    }
    empty = zero()
    return [Day(day, found.get(day, empty)) for day in period.dates()]


def totals(days: Iterable[Day]) -> Stats:
    """The period's totals: the sum of its days (exact integers, so the same as
    summing the rollup rows directly, without a second pass over them)."""
    return add_up(day.stats for day in days)


# Columns the affiliate table sorts by (descending, then by affiliate id).
SORTS = ("revenue", "commission", "conversions", "clicks", "unique_clicks")
DEFAULT_SORT = "revenue"


def check_sort(sort: str | None) -> str:
    if not sort:
        return DEFAULT_SORT
    if sort not in SORTS:
        raise InvalidInput(
            f"sort must be one of {', '.join(SORTS)}.", code="invalid_sort", field="sort"
        )
    return sort


def _orders(figures: Mapping[str, ColumnElement[Any]]) -> dict[str, ColumnElement[Any]]:
    """What each sort orders by, given the period's figures as columns."""
    return {
        "revenue": figures["revenue_minor"],
        # Earned commission, as EARNED_STATES: pending + approved + paid.
        "commission": figures["commission_pending_minor"]
        + figures["commission_approved_minor"]
        + figures["commission_paid_minor"],
        "conversions": figures["conversions"],
        "clicks": figures["clicks"],
        "unique_clicks": figures["unique_clicks"],
    }


@lru_cache(maxsize=16)
def _recent_ranking(sort: str) -> Select[Any]:
    """The affiliate table from the recent window (one row per affiliate);
    parameters: program_id, limit, offset."""
    table = RecentStats.__table__
    figures = {name: table.c[name] for name in FIGURES}
    return (
        select(table.c.affiliate_id, *figures.values())
        .where(
            table.c.program_id == bindparam("program_id"),
            # An affiliate with no figure in the window was not active in it.
            or_(*(column != 0 for column in figures.values())),
        )
        .order_by(_orders(figures)[sort].desc(), table.c.affiliate_id)
        .limit(bindparam("limit", type_=Integer()))
        .offset(bindparam("offset", type_=Integer()))
    )


@lru_cache(maxsize=256)
def _ranking(shape: Shape, sort: str) -> Select[Any]:
    """The affiliate table's statement for a shape of pieces and a sort (built
    once, see service.covering_rows); parameters: program_id, limit, offset and
    the pieces' bounds."""
    rows_of = covering_rows(shape, one_affiliate=False)
    sums = {name: func.sum(rows_of.c[name]) for name in FIGURES}
    order = _orders(sums)
    affiliate = rows_of.c.affiliate_id
    return (
        select(affiliate, *sums.values())
        .group_by(affiliate)
        # An affiliate whose figures net out to zero (a span minus its only
        # active days) was not active in the period.
        .having(or_(*(func.sum(rows_of.c[name]) != 0 for name in FIGURES)))
        .order_by(order[sort].desc(), affiliate)
        .limit(bindparam("limit", type_=Integer()))
        .offset(bindparam("offset", type_=Integer()))
    )


@dataclass(frozen=True)
class AffiliateFigures:
    affiliate_id: str
    stats: Stats


@dataclass(frozen=True)
class AffiliatePage:
    rows: list[AffiliateFigures]
    offset: int
    limit: int
    has_more: bool = field(default=False)


def top_affiliates(
    session: Session,
    *,
    program_id: str,
    period: Period,
    sort: str,
    limit: int,
    offset: int = 0,
) -> AffiliatePage:
    """Affiliates with any figure in the period, best first by `sort`; one page.

    Every affiliate's figures are the signed sum of the spans and days that
    cover the period (spans.cover), in one grouped query."""
    pieces = spans.cover(period.first, period.last)
    if not pieces:  # a period that ends before it starts
        return AffiliatePage(rows=[], offset=offset, limit=limit)
    sort = check_sort(sort)
    page = {"program_id": program_id, "limit": limit + 1, "offset": offset}
    # Only a period as long as the window can be read from it: others skip the check.
    in_window = period.days == recent.WINDOW_DAYS and recent.covers(
        session, program_id=program_id, first=period.first, last=period.last
    )
    if in_window:
        rows = list(session.execute(_recent_ranking(sort), page))
    else:
        without_parallel_workers(session)
        rows = list(
            session.execute(_ranking(shape_of(pieces), sort), {**page, **bounds_of(pieces)})
        )
    return AffiliatePage(
        rows=[AffiliateFigures(row[0], stats_of(row[1:])) for row in rows[:limit]],
        offset=offset,
        limit=limit,
        has_more=len(rows) > limit,
    )
