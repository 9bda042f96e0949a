"""The weekly report's figures: an ISO week (Monday to Sunday, UTC) of a
program against the week before, from the DailyStats rollup; and when a week's
report is due (Monday 06:00 UTC after it ended)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.orm import Session

from partnerloop.analytics import service
from partnerloop.analytics.dashboard import Period
from partnerloop.analytics.service import Stats
from partnerloop.core.errors import InvalidInput

# The report of a week goes out on the Monday after it, from this hour (UTC):
# late enough that the night's late-reported orders are in.
DUE_HOUR_UTC = 6
# A week-over-week change is a percentage with one decimal, rounded once, half to even.
CHANGE_QUANTUM = Decimal("0.1")

_WEEK_RE = re.compile(r"([0-9]{4})-W([0-9]{2})")


@dataclass(frozen=True, order=True)
class Week:
    year: int  # the ISO year (the year of the week's Thursday)
    number: int

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.number, 1)

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def period(self) -> Period:
        return Period(self.monday, self.sunday)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-W{self.number:02d}"

    def previous(self) -> Week:
        return week_of(self.monday - timedelta(days=7))

    def next(self) -> Week:
        return week_of(self.monday + timedelta(days=7))

    def due_at(self) -> datetime:
        """When this week's report goes out: the Monday after it, DUE_HOUR_UTC."""
        return datetime.combine(self.monday + timedelta(days=7), time(DUE_HOUR_UTC), tzinfo=UTC)


def week_of(day: date) -> Week:
    year, number, _ = day.isocalendar()
    return Week(year, number)


def last_complete_week(today: date) -> Week:
    return week_of(today).previous()


def parse_week(text: str | None, *, today: date) -> Week:
    """?week=2026-W47; missing: the last complete week. A week that has not
    started yet is refused."""
    if text is None or not text.strip():
        return last_complete_week(today)
    match = _WEEK_RE.fullmatch(text.strip())
    try:
        if match is None:
            raise ValueError(text)
        week = Week(int(match.group(1)), int(match.group(2)))
        week.monday  # noqa: B018 - raises ValueError for a week the year does not have
    except ValueError:
        raise InvalidInput(
            "week must be an ISO week written YYYY-Www, e.g. 2026-W47.",
            code="invalid_week",
            field="week",
        ) from None
    if week > week_of(today):
        raise InvalidInput(
            f"Week {week.label} has not started yet.", code="future_week", field="week"
        )
    return week


def due_week(now: datetime) -> Week:
    """The newest week whose report is due at `now`."""
    week = week_of(now.astimezone(UTC).date()).previous()
    return week if week.due_at() <= now else week.previous()


def change_percent(current: int, previous: int) -> Decimal | None:
    """(current - previous) / previous in percent; None when there was nothing before."""
    if previous == 0:
        return None
    change = Decimal(current - previous) * 100 / Decimal(previous)
    return change.quantize(CHANGE_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class WeekFigures:
    week: Week
    current: Stats
    previous: Stats


def compare(session: Session, *, program_id: str, week: Week) -> WeekFigures:
    """The week's totals and the week before's (one grouped query each)."""

    def totals(of: Week) -> Stats:
        return service.stats(
            session,
            program_id=program_id,
            affiliate_id=None,
            day_from=of.monday,
            day_to=of.sunday,
        )

    return WeekFigures(week=week, current=totals(week), previous=totals(week.previous()))
