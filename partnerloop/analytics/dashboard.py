"""The dashboard's figures for one program and a period of UTC days, read from
the DailyStats rollup (one row per program, affiliate and day, maintained on
write), never from the clicks table: the cost follows the number of days and
active affiliates, not the traffic.

Money is in the program's currency, minor units. Commission amounts sit on the
day of the conversion they came from, in the state they are in now, so "paid in
the period" means: paid commissions on conversions made in the period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from partnerloop.analytics.models import DailyStats
from partnerloop.analytics.service import COMMISSION_STATES, Stats
from partnerloop.core.errors import InvalidInput

DEFAULT_PERIOD_DAYS = 30
# A year and a leap day: the longest period one page (and one query) covers.
MAX_PERIOD_DAYS = 366
# Rates are percentages shown with two decimals, rounded once, half to even
# (the rounding rule of partnerloop.core.money, applied to a rate).
RATE_QUANTUM = Decimal("0.01")
# Commission that is or will be the affiliate's: what "commission" sorts and sums by.
EARNED_STATES = ("pending", "approved", "paid")

_FIGURES = (
    "clicks",
    "unique_clicks",
    "conversions",
    "revenue_minor",
    *(f"commission_{state}_minor" for state in COMMISSION_STATES),
)


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


def _stats(values: Iterable[object]) -> Stats:
    numbers = [int(value or 0) for value in values]  # type: ignore[call-overload]
    return Stats(
        clicks=numbers[0],
        unique_clicks=numbers[1],
        conversions=numbers[2],
        revenue_minor=numbers[3],
        commissions_minor=dict(zip(COMMISSION_STATES, numbers[4:], strict=True)),
    )


def zero() -> Stats:
    return _stats([0] * len(_FIGURES))


def add_up(many: Iterable[Stats]) -> Stats:
    total = [0] * len(_FIGURES)
    for stats in many:
        row = _as_row(stats)
        total = [a + b for a, b in zip(total, row, strict=True)]
    return _stats(total)


def _as_row(stats: Stats) -> list[int]:
    return [
        stats.clicks,
        stats.unique_clicks,
        stats.conversions,
        stats.revenue_minor,
        *(stats.commissions_minor[state] for state in COMMISSION_STATES),
    ]


def _sums() -> list[ColumnElement[int]]:
    return [func.sum(getattr(DailyStats, name)).label(name) for name in _FIGURES]


def _in_period(program_id: str, period: Period) -> list[ColumnElement[bool]]:
    return [
        DailyStats.program_id == program_id,
        DailyStats.day >= period.first,
        DailyStats.day <= period.last,
    ]


@dataclass(frozen=True)
class Day:
    day: date
    stats: Stats


def daily(session: Session, *, program_id: str, period: Period) -> list[Day]:
    """Every day of the period (days without a row are zeros), in one grouped query."""
    found = {
        row[0]: _stats(row[1:])
        for row in session.execute(
            select(DailyStats.day, *_sums())
            .where(*_in_period(program_id, period))
            .group_by(DailyStats.day)
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
    """Affiliates with any figure in the period, best first by `sort`; one page."""
    sums = _sums()
    by_name = {column.name: column for column in sums}
    earned = DailyStats.commission_pending_minor + DailyStats.commission_approved_minor
    order: dict[str, ColumnElement[int]] = {
        "revenue": by_name["revenue_minor"],
        "commission": func.sum(earned + DailyStats.commission_paid_minor),
        "conversions": by_name["conversions"],
        "clicks": by_name["clicks"],
        "unique_clicks": by_name["unique_clicks"],
    }
    rows = list(
        session.execute(
            select(DailyStats.affiliate_id, *sums)
            # '' holds orders no affiliate earned: in the totals, not in this table.
            .where(*_in_period(program_id, period), DailyStats.affiliate_id != "")
            .group_by(DailyStats.affiliate_id)
            .order_by(order[check_sort(sort)].desc(), DailyStats.affiliate_id)
            .limit(limit + 1)
            .offset(offset)
        )
    )
    return AffiliatePage(
        rows=[AffiliateFigures(row[0], _stats(row[1:])) for row in rows[:limit]],
        offset=offset,
        limit=limit,
        has_more=len(rows) > limit,
    )
