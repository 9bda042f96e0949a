"""Which rollup rows add up to a period of days (pure logic, no I/O).

Per affiliate, figures are kept per day (DailyStats) and per calendar span
(PeriodStats): a year, a month, a quarter of a month ("part": days 1-8,
9-16, 17-24, 25 to the end) and an ISO week (Monday to Sunday). A period is
covered by whole spans plus or minus smaller ones, down to single days:
whichever reads the fewest rows. So the last 365 days read 5 rows per
affiliate (2 of them in the future, so empty) instead of 365, the default 30
days 4 instead of 30, the weekly report's week 1, and the cost no longer
grows with how many days each affiliate was active. A minus is sound because
every span is exactly the sum of its days.

Weeks do not nest in months, so they are not in the year > month > part > day
ladder: a period is also tried as a range of weeks with the ladder's pieces
added or taken away at either end, and the cheapest cover is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

YEAR = "year"
MONTH = "month"
PART = "part"
WEEK = "week"  # ISO weeks: beside the ladder, not in it
DAY = "day"  # DailyStats rows, not PeriodStats
GRAINS = (YEAR, MONTH, PART, WEEK)

PART_FIRST_DAYS = (1, 9, 17, 25)

_ONE_DAY = timedelta(days=1)


def year_start(day: date) -> date:
    return day.replace(month=1, day=1)


def year_end(day: date) -> date:
    return day.replace(month=12, day=31)


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - _ONE_DAY


def part_start(day: date) -> date:
    return day.replace(day=max(first for first in PART_FIRST_DAYS if first <= day.day))


def part_end(day: date) -> date:
    later = [first for first in PART_FIRST_DAYS if first > day.day]
    return day.replace(day=later[0] - 1) if later else month_end(day)


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_end(day: date) -> date:
    return week_start(day) + timedelta(days=6)


def _same(day: date) -> date:
    return day


# grain -> (first day of its unit holding a day, last day of it); coarsest first.
BOUNDS: dict[str, tuple[Callable[[date], date], Callable[[date], date]]] = {
    YEAR: (year_start, year_end),
    MONTH: (month_start, month_end),
    PART: (part_start, part_end),
    WEEK: (week_start, week_end),
    DAY: (_same, _same),
}
_FINER = {YEAR: MONTH, MONTH: PART, PART: DAY}


def span_starts(day: date) -> tuple[tuple[str, date], ...]:
    """The (grain, first_day) keys of the PeriodStats rows a day's figures add to."""
    return tuple((grain, BOUNDS[grain][0](day)) for grain in GRAINS)


@dataclass(frozen=True)
class Piece:
    """Rows of one grain whose first day lies in [first, last] (None: open), added
    (sign 1) or taken away (sign -1). `units`: rows per affiliate at most."""

    sign: int
    grain: str
    first: date | None
    last: date | None
    units: int


Cover = list[Piece]


def _cost(pieces: Cover) -> int:
    return sum(piece.units for piece in pieces)


def _negated(pieces: Cover) -> Cover:
    return [Piece(-p.sign, p.grain, p.first, p.last, p.units) for p in pieces]


def _by_units(first: date, last: date, grain: str) -> Cover:
    """[first, last] (inside one unit of the grain above) as whole units of
    `grain`, one range, and the partial ones at either end by `_within`."""
    start_of, end_of = BOUNDS[grain]
    pieces: Cover = []
    whole: list[date] = []
    day = first
    while day <= last:
        end = end_of(day)
        if day == start_of(day) and end <= last:
            whole.append(day)
        else:
            pieces.extend(_within(day, min(end, last), grain))
        day = end + _ONE_DAY
    if whole:
        pieces.append(Piece(1, grain, whole[0], whole[-1], len(whole)))
    return pieces


def _within(first: date, last: date, grain: str) -> Cover:
    """[first, last] inside one unit of `grain`: the unit itself, its finer
    units, or the unit minus the finer units around the period."""
    start_of, end_of = BOUNDS[grain]
    start, end = start_of(first), end_of(first)
    if (first, last) == (start, end):
        return [Piece(1, grain, start, start, 1)]
    finer = _FINER[grain]
    adding = _by_units(first, last, finer)
    taking = [Piece(1, grain, start, start, 1)]
    if first > start:
        taking += _negated(_by_units(start, first - _ONE_DAY, finer))
    if last < end:
        taking += _negated(_by_units(last + _ONE_DAY, end, finer))
    return taking if _cost(taking) < _cost(adding) else adding


def cover(first: date | None, last: date | None) -> Cover:
    """Pieces whose signed sum is exactly the days from `first` to `last`
    (inclusive; None: unbounded on that side)."""
    return list(_cheapest_cover(first, last))


# Finding the cheapest cover tries a few ways down to single days (about 1 ms
# of Python for a month or a year), while the periods asked for repeat: the
# same few each day for every page and report.
@lru_cache(maxsize=4096)
def _cheapest_cover(first: date | None, last: date | None) -> tuple[Piece, ...]:
    return tuple(_cheapest(first, last))


def _cheapest(first: date | None, last: date | None) -> Cover:
    if first is None or last is None:
        return _by_years(first, last)
    if first > last:
        return []
    ladder = _by_years(first, last)
    weeks = _by_weeks(first, last)
    return weeks if weeks is not None and _cost(weeks) < _cost(ladder) else ladder


def _by_weeks(first: date, last: date) -> Cover | None:
    """[first, last] as one range of ISO weeks with the ladder's days at either
    end: added when the period starts (ends) inside a week, or the week taken
    whole and the days outside the period taken away; the cheapest way, or
    None when no range of weeks is worth trying."""
    options: list[Cover] = []
    for monday in {week_start(first), week_start(first + timedelta(days=6))}:
        for sunday in {week_end(last), week_end(last - timedelta(days=6))}:
            if monday > sunday:
                continue
            weeks = ((sunday - monday).days + 1) // 7
            pieces = [Piece(1, WEEK, monday, week_start(sunday), weeks)]
            if monday > first:
                pieces += _by_years(first, monday - _ONE_DAY)
            elif monday < first:
                pieces += _negated(_by_years(monday, first - _ONE_DAY))
            if sunday < last:
                pieces += _by_years(sunday + _ONE_DAY, last)
            elif sunday > last:
                pieces += _negated(_by_years(last + _ONE_DAY, sunday))
            options.append(pieces)
    return min(options, key=_cost) if options else None


def _by_years(first: date | None, last: date | None) -> Cover:
    """The ladder's cover: whole years, and the rest of each end's year by `_within`."""
    if first is not None and last is not None and first.year == last.year:
        return _within(first, last, YEAR)
    pieces: Cover = []
    whole_from = first
    if first is not None and first != year_start(first):
        pieces += _within(first, year_end(first), YEAR)
        whole_from = year_end(first) + _ONE_DAY
    whole_to = last
    tail: Cover = []
    if last is not None and last != year_end(last):
        tail = _within(year_start(last), last, YEAR)
        whole_to = year_start(last) - _ONE_DAY
    if whole_from is None or whole_to is None or whole_from <= whole_to:
        years = (
            whole_to.year - whole_from.year + 1
            if whole_from is not None and whole_to is not None
            else 0
        )
        pieces.append(
            Piece(1, YEAR, whole_from, None if whole_to is None else year_start(whole_to), years)
        )
    return pieces + tail
