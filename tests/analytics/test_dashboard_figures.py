"""The dashboard's figures from the rollup: periods, rates and their one rounding,
the per-day series, the affiliate ranking and its pages; ISO weeks and when a
week's report is due."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from partnerloop.analytics import dashboard, service
from partnerloop.analytics.dashboard import Period
from partnerloop.analytics.report import (
    Week,
    change_percent,
    compare,
    due_week,
    last_complete_week,
    parse_week,
)
from partnerloop.core.errors import InvalidInput
from partnerloop.core.ids import new_id

TODAY = date(2026, 11, 24)  # a Tuesday in ISO week 2026-W48


def test_the_default_period_is_the_last_30_days() -> None:
    assert dashboard.parse_period(None, None, today=TODAY) == Period(date(2026, 10, 26), TODAY)
    assert dashboard.parse_period("", " ", today=TODAY) == Period(date(2026, 10, 26), TODAY)
    assert dashboard.parse_period(None, "2026-01-31", today=TODAY) == Period(
        date(2026, 1, 2), date(2026, 1, 31)
    )
    assert dashboard.parse_period("2026-11-01", None, today=TODAY) == Period(
        date(2026, 11, 1), TODAY
    )


@pytest.mark.parametrize(
    ("first", "last", "code", "field"),
    [
        ("2026-02-30", None, "invalid_date", "from"),
        ("20261101", None, "invalid_date", "from"),
        (None, "2026-11-1", "invalid_date", "to"),
        ("2026-11-02", "2026-11-01", "invalid_period", "from"),
        ("2025-11-23", "2026-11-24", "period_too_long", "from"),  # 367 days
    ],
)
def test_a_bad_period_is_refused(
    first: str | None, last: str | None, code: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        dashboard.parse_period(first, last, today=TODAY)
    assert (refused.value.code, refused.value.field) == (code, field)


def test_366_days_is_the_longest_period() -> None:
    assert dashboard.parse_period("2025-11-24", "2026-11-24", today=TODAY).days == 366


@pytest.mark.parametrize(
    ("part", "whole", "percent"),
    [
        (4, 5, Decimal("80.00")),
        (2, 3, Decimal("66.67")),
        (1, 160, Decimal("0.62")),  # 0.625: half to even
        (3, 160, Decimal("1.88")),  # 1.875: half to even
        (7, 5, Decimal("140.00")),  # unattributed orders can outnumber unique clicks
        (3, 0, None),
    ],
)
def test_rates_are_rounded_once_half_to_even(
    part: int, whole: int, percent: Decimal | None
) -> None:
    assert dashboard.rate_percent(part, whole) == percent


@pytest.mark.parametrize(
    ("current", "previous", "change"),
    [
        (150, 100, Decimal("50.0")),
        (50, 100, Decimal("-50.0")),
        (1, 3, Decimal("-66.7")),
        (1, 16, Decimal("-93.8")),  # -93.75: half to even
        (3, 16, Decimal("-81.2")),  # -81.25: half to even
        (5, 0, None),
        (0, 0, None),
    ],
)
def test_week_over_week_change(current: int, previous: int, change: Decimal | None) -> None:
    assert change_percent(current, previous) == change


def _program(session: Session) -> str:
    from tests.factories.programs import create_program

    return create_program(session).id


def test_the_series_fills_days_and_sums_to_the_totals(session: Session) -> None:
    program_id = _program(session)
    for day, affiliate, increments in [
        (date(2026, 3, 1), "aff_a", {"clicks": 5, "unique_clicks": 4}),
        (date(2026, 3, 1), "aff_b", {"clicks": 2, "unique_clicks": 2, "conversions": 1}),
        (date(2026, 3, 3), "aff_a", {"conversions": 2, "revenue_minor": 12345}),
        (date(2026, 3, 3), None, {"conversions": 1, "revenue_minor": 500}),
        (date(2026, 3, 4), "aff_a", {"clicks": 99}),  # outside the period
    ]:
        service.add(
            session, program_id=program_id, affiliate_id=affiliate, day=day, increments=increments
        )
    service.commission_moved(
        session,
        program_id=program_id,
        affiliate_id="aff_a",
        day=date(2026, 3, 3),
        amount_minor=1234,
        from_state=None,
        to_state="pending",
    )
    service.commission_moved(
        session,
        program_id=program_id,
        affiliate_id="aff_a",
        day=date(2026, 3, 3),
        amount_minor=1000,
        from_state=None,
        to_state="paid",
    )
    period = Period(date(2026, 2, 28), date(2026, 3, 3))

    days = dashboard.daily(session, program_id=program_id, period=period)
    total = dashboard.totals(days)

    assert [(d.day.day, d.stats.clicks, d.stats.conversions) for d in days] == [
        (28, 0, 0),
        (1, 7, 1),
        (2, 0, 0),
        (3, 0, 3),
    ]
    assert total == service.stats(
        session,
        program_id=program_id,
        affiliate_id=None,
        day_from=period.first,
        day_to=period.last,
    )
    assert (total.clicks, total.unique_clicks, total.revenue_minor) == (7, 6, 12845)
    assert total.commissions_minor == {
        "pending": 1234,
        "approved": 0,
        "paid": 1000,
        "reversed": 0,
        "declined": 0,
    }
    assert dashboard.earned_minor(total) == 2234
    assert dashboard.conversion_rate(total) == Decimal("66.67")  # 4 / 6


def test_affiliates_rank_by_the_chosen_column_and_page(session: Session) -> None:
    program_id = _program(session)
    day = date(2026, 5, 5)
    figures = {
        "aff_1": {"clicks": 10, "revenue_minor": 100},
        "aff_2": {"clicks": 30, "revenue_minor": 50},
        "aff_3": {"clicks": 20, "revenue_minor": 100},
        "aff_4": {"clicks": 5, "revenue_minor": 900},
    }
    for affiliate, increments in figures.items():
        service.add(
            session, program_id=program_id, affiliate_id=affiliate, day=day, increments=increments
        )
    service.add(  # an unattributed order: never a row of this table
        session,
        program_id=program_id,
        affiliate_id=None,
        day=day,
        increments={"revenue_minor": 10**6},
    )
    period = Period(day, day)

    def ids(sort: str, limit: int, offset: int = 0) -> tuple[list[str], bool]:
        page = dashboard.top_affiliates(
            session, program_id=program_id, period=period, sort=sort, limit=limit, offset=offset
        )
        return [row.affiliate_id for row in page.rows], page.has_more

    assert ids("clicks", 10) == (["aff_2", "aff_3", "aff_1", "aff_4"], False)
    # Ties go by affiliate id.
    assert ids("revenue", 10) == (["aff_4", "aff_1", "aff_3", "aff_2"], False)
    assert ids("revenue", 2) == (["aff_4", "aff_1"], True)
    assert ids("revenue", 2, offset=2) == (["aff_3", "aff_2"], False)
    with pytest.raises(InvalidInput):
        dashboard.check_sort("name")


def test_a_week_against_the_week_before(session: Session) -> None:
    program_id = _program(session)
    week = Week(2026, 47)
    for day, clicks in [(date(2026, 11, 9), 4), (date(2026, 11, 15), 1), (date(2026, 11, 16), 7)]:
        service.add(
            session,
            program_id=program_id,
            affiliate_id=new_id("affiliate"),
            day=day,
            increments={"clicks": clicks},
        )

    figures = compare(session, program_id=program_id, week=week)

    assert (figures.current.clicks, figures.previous.clicks) == (7, 5)


def test_iso_weeks() -> None:
    assert (Week(2026, 47).monday, Week(2026, 47).sunday) == (
        date(2026, 11, 16),
        date(2026, 11, 22),
    )
    assert Week(2026, 1).previous() == Week(2025, 52)
    assert Week(2026, 53).next() == Week(2027, 1)
    assert last_complete_week(TODAY) == Week(2026, 47)
    assert parse_week(None, today=TODAY) == Week(2026, 47)
    assert parse_week("2026-W48", today=TODAY) == Week(2026, 48)
    assert parse_week("2020-W53", today=TODAY).label == "2020-W53"
    for bad, code in [
        ("2025-W53", "invalid_week"),  # 2025 has 52 ISO weeks
        ("2026-W00", "invalid_week"),
        ("2026-47", "invalid_week"),
        ("2026-W7", "invalid_week"),
        ("2026-W49", "future_week"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            parse_week(bad, today=TODAY)
        assert refused.value.code == code, bad


def test_a_weeks_report_is_due_on_the_monday_after_from_six_utc() -> None:
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    assert Week(2026, 47).due_at() == monday + timedelta(hours=6)
    assert due_week(monday + timedelta(hours=5, minutes=59)) == Week(2026, 46)
    assert due_week(monday + timedelta(hours=6)) == Week(2026, 47)
    assert due_week(monday + timedelta(days=6, hours=23)) == Week(2026, 47)
