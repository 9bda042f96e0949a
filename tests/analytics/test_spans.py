"""Which rollup rows cover a period: the signed pieces add up to exactly the
period's days, and a period reads few rows per affiliate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerloop.analytics import spans
from partnerloop.analytics.spans import BOUNDS, DAY, MONTH, PART, WEEK, YEAR, Piece, cover

ONE_DAY = timedelta(days=1)


def days_of(piece: Piece, *, lowest: date, highest: date) -> Iterator[date]:
    """Every day a piece stands for; open ends stop at lowest / highest."""
    start_of, end_of = BOUNDS[piece.grain]
    day = piece.first if piece.first is not None else start_of(lowest)
    last = piece.last if piece.last is not None else start_of(highest)
    while day <= last:
        assert day == start_of(day)
        end = end_of(day)
        while day <= end:
            yield day
            day += ONE_DAY


def signed_days(pieces: list[Piece], *, lowest: date, highest: date) -> Counter[date]:
    total: Counter[date] = Counter()
    for piece in pieces:
        for day in days_of(piece, lowest=lowest, highest=highest):
            total[day] += piece.sign
    return +total  # drops days that net to zero


def rows_read(pieces: list[Piece]) -> int:
    return sum(piece.units for piece in pieces)


def days_between(first: date, last: date) -> set[date]:
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


@given(
    first=st.dates(min_value=date(2023, 1, 1), max_value=date(2029, 12, 31)),
    length=st.integers(min_value=1, max_value=800),
)
def test_the_pieces_add_up_to_exactly_the_period(first: date, length: int) -> None:
    last = first + timedelta(days=length - 1)

    pieces = cover(first, last)

    counted = signed_days(pieces, lowest=first, highest=last)
    assert set(counted) == days_between(first, last)
    assert set(counted.values()) == {1}
    # No piece reaches outside the years (and ISO weeks) the period touches.
    lowest = spans.year_start(spans.week_start(first))
    highest = spans.year_end(spans.week_end(last))
    for piece in pieces:
        assert piece.first is not None
        assert piece.last is not None
        assert lowest <= piece.first <= piece.last <= highest


@given(day=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)))
def test_a_day_belongs_to_one_year_one_month_one_part_and_one_iso_week(day: date) -> None:
    starts = spans.span_starts(day)
    (year_grain, year), (month_grain, month), (part_grain, part), (week_grain, monday) = starts

    assert (year_grain, month_grain, part_grain, week_grain) == (YEAR, MONTH, PART, WEEK)
    assert monday.weekday() == 0
    assert monday <= day <= spans.week_end(day) == monday + timedelta(days=6)
    assert monday.isocalendar()[:2] == day.isocalendar()[:2]
    assert year <= month <= part <= day <= spans.part_end(day) <= spans.month_end(day)
    assert spans.month_end(day) <= spans.year_end(day) == date(day.year, 12, 31)
    assert year == date(day.year, 1, 1)
    assert part.day in spans.PART_FIRST_DAYS
    assert spans.part_end(day) == spans.month_end(day) or spans.part_end(day).day + 1 in (9, 17, 25)
    assert DAY not in spans.GRAINS


@pytest.mark.parametrize(
    ("first", "last", "most_rows"),
    [
        # a year from mid-month, across New Year: 2026 minus what is left of it, plus
        # the end of 2025 (the 2 rows taken away are in the future: empty)
        (date(2025, 11, 25), date(2026, 11, 24), 5),
        (date(2025, 11, 24), date(2026, 11, 24), 6),  # 366 days, the longest period
        (date(2026, 10, 26), date(2026, 11, 24), 4),  # the default 30 days
        (date(2026, 11, 16), date(2026, 11, 22), 1),  # an ISO week (the weekly report)
        (date(2025, 12, 29), date(2026, 1, 4), 1),  # an ISO week across New Year
        (date(2026, 11, 9), date(2026, 11, 22), 2),  # two ISO weeks: one range, 2 rows
        (date(2026, 11, 15), date(2026, 11, 22), 2),  # a Sunday, then a week
        (date(2026, 11, 16), date(2026, 11, 21), 2),  # Monday to Saturday: a week less a day
        (date(2025, 12, 30), date(2026, 1, 4), 2),  # a week less its Monday, across New Year
        (date(2026, 2, 1), date(2026, 2, 28), 1),  # a whole month
        (date(2024, 2, 25), date(2024, 2, 29), 1),  # the last part of a leap February
        (date(2026, 3, 17), date(2026, 3, 17), 1),  # a single day
    ],
)
def test_a_period_reads_few_rows_per_affiliate(first: date, last: date, most_rows: int) -> None:
    pieces = cover(first, last)

    assert rows_read(pieces) == most_rows
    assert set(signed_days(pieces, lowest=first, highest=last)) == days_between(first, last)


def test_open_periods_use_whole_years_up_to_the_open_end() -> None:
    # Given an affiliate's all-time figures, or everything up to a day
    everything = cover(None, None)
    until = cover(None, date(2026, 11, 24))
    since = cover(date(2026, 1, 10), None)

    # Then all-time is every year row, and an open side is one range of years
    assert everything == [Piece(1, YEAR, None, None, 0)]
    assert Piece(1, YEAR, None, date(2025, 1, 1), 0) in until
    assert Piece(1, YEAR, date(2027, 1, 1), None, 0) in since
    lowest, highest = date(2025, 1, 1), date(2027, 12, 31)
    assert set(signed_days(until, lowest=lowest, highest=highest)) == days_between(
        lowest, date(2026, 11, 24)
    )
    assert set(signed_days(since, lowest=lowest, highest=highest)) == days_between(
        date(2026, 1, 10), highest
    )


def test_a_backwards_period_is_empty() -> None:
    assert cover(date(2026, 3, 2), date(2026, 3, 1)) == []


def test_a_period_of_whole_weeks_reads_one_range_of_week_rows() -> None:
    pieces = cover(date(2025, 12, 22), date(2026, 1, 11))

    assert pieces == [Piece(1, WEEK, date(2025, 12, 22), date(2026, 1, 5), 3)]
