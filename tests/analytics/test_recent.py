"""The recent window (RecentStats): after a roll the dashboard ranks a period's
affiliates from one row each, and its figures equal the days' figures
(DailyStats) to the unit, whatever was written before or after the roll, on
which day, and when a writer is in the middle of adding while the roll runs."""

from __future__ import annotations

import random
import secrets
import threading
import time as clock
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from partnerloop.analytics import dashboard, recent, service
from partnerloop.analytics.dashboard import SORTS, Period
from partnerloop.analytics.models import (
    FIGURES,
    DailyStats,
    PeriodStats,
    ProgramDailyStats,
    RecentStats,
)
from partnerloop.analytics.service import RollupAdd
from partnerloop.core.db import transaction
from partnerloop.runtime import Runtime

TODAY = date(2026, 11, 25)
FIRST = recent.window_first_day(TODAY)  # 2026-10-27


def _adds(rng: random.Random, program_id: str, days: list[date], n: int) -> list[RollupAdd]:
    """n increments on random days and affiliates (some unattributed, some
    taking away, as refunds and commission moves do)."""
    adds = []
    for _ in range(n):
        increments = {name: rng.randint(-3, 9) for name in rng.sample(FIGURES, 3)}
        affiliate = rng.choice(["aff_a", "aff_b", "aff_c", "aff_d", ""])
        adds.append(RollupAdd(program_id, affiliate, rng.choice(days), increments))
    return adds


def _expected(session: Session, program_id: str, period: Period) -> dict[str, list[int]]:
    """Every affiliate's figures for the period, from the days themselves."""
    rows = session.execute(
        select(DailyStats.affiliate_id, *(func.sum(getattr(DailyStats, n)) for n in FIGURES))
        .where(
            DailyStats.program_id == program_id,
            DailyStats.affiliate_id != "",
            DailyStats.day >= period.first,
            DailyStats.day <= period.last,
        )
        .group_by(DailyStats.affiliate_id)
    )
    found = {row[0]: [int(value) for value in row[1:]] for row in rows}
    return {affiliate: figures for affiliate, figures in found.items() if any(figures)}


def _page(
    session: Session, program_id: str, period: Period, sort: str
) -> list[tuple[str, list[int]]]:
    page = dashboard.top_affiliates(
        session, program_id=program_id, period=period, sort=sort, limit=50
    )
    return [(row.affiliate_id, service_figures(row.stats)) for row in page.rows]


def service_figures(stats: service.Stats) -> list[int]:
    return [
        stats.clicks,
        stats.unique_clicks,
        stats.conversions,
        stats.revenue_minor,
        *(stats.commissions_minor[state] for state in service.COMMISSION_STATES),
    ]


def _ranked(expected: dict[str, list[int]], sort: str) -> list[tuple[str, list[int]]]:
    index = {"revenue": 3, "conversions": 2, "clicks": 0, "unique_clicks": 1}

    def key(item: tuple[str, list[int]]) -> tuple[int, str]:
        figures = item[1]
        value = sum(figures[4:7]) if sort == "commission" else figures[index[sort]]
        return (-value, item[0])

    return sorted(expected.items(), key=key)


def test_after_a_roll_the_window_ranks_the_period_exactly(session: Session) -> None:
    # Given writes before the window, in it, on its first day and on the day before
    program_id = f"prog_{secrets.token_hex(4)}"
    rng = random.Random(7)
    days = [FIRST - timedelta(days=n) for n in (40, 3, 1)] + [
        FIRST + timedelta(days=n) for n in (0, 1, 10, 29)
    ]
    service.add_many(session, _adds(rng, program_id, days, 120))
    period = Period(FIRST, TODAY)

    # When the window has not been moved yet, the page adds up spans; after the roll it
    # reads the window; then more writes, backdated ones included, and a roll a day later
    assert not recent.covers(session, program_id=program_id, first=FIRST, last=TODAY)
    expected_before = _expected(session, program_id, period)
    for sort in SORTS:
        assert _page(session, program_id, period, sort) == _ranked(expected_before, sort)

    recent.roll(session, first_day=FIRST)

    assert recent.covers(session, program_id=program_id, first=FIRST, last=TODAY)
    for sort in SORTS:
        assert _page(session, program_id, period, sort) == _ranked(expected_before, sort)

    service.add_many(session, _adds(rng, program_id, days, 80))
    expected_after = _expected(session, program_id, period)
    assert expected_after != expected_before
    for sort in SORTS:
        assert _page(session, program_id, period, sort) == _ranked(expected_after, sort)

    tomorrow = TODAY + timedelta(days=1)
    service.add_many(session, _adds(rng, program_id, [tomorrow], 10))
    # a day after the period has figures: the window would count them, so it is not read
    assert not recent.covers(session, program_id=program_id, first=FIRST, last=TODAY)
    next_period = Period(FIRST + timedelta(days=1), tomorrow)
    recent.roll(session, first_day=next_period.first)
    assert recent.covers(
        session, program_id=program_id, first=next_period.first, last=next_period.last
    )
    for sort in SORTS:
        assert _page(session, program_id, next_period, sort) == _ranked(
            _expected(session, program_id, next_period), sort
        )


def test_a_roll_back_to_an_earlier_first_day_adds_the_days_in_between(session: Session) -> None:
    # Given a window rolled to a later day (a clock that ran ahead)
    program_id = f"prog_{secrets.token_hex(4)}"
    rng = random.Random(11)
    days = [FIRST + timedelta(days=n) for n in range(-5, 30, 3)]
    service.add_many(session, _adds(rng, program_id, days, 100))
    recent.roll(session, first_day=FIRST + timedelta(days=9))

    # When it is rolled back
    recent.roll(session, first_day=FIRST)

    # Then the window holds the days from FIRST again
    period = Period(FIRST, TODAY)
    assert recent.covers(session, program_id=program_id, first=FIRST, last=TODAY)
    assert _page(session, program_id, period, "revenue") == _ranked(
        _expected(session, program_id, period), "revenue"
    )


def test_a_new_affiliate_written_on_a_day_before_the_window_is_moved_by_the_next_roll(
    session: Session,
) -> None:
    # Given a rolled window, and then a first write for a new affiliate, backdated
    program_id = f"prog_{secrets.token_hex(4)}"
    service.add_many(session, [RollupAdd(program_id, "aff_a", FIRST, {"clicks": 2})])
    recent.roll(session, first_day=FIRST)
    service.add_many(
        session,
        [
            RollupAdd(program_id, "aff_new", FIRST - timedelta(days=2), {"revenue_minor": 500}),
            RollupAdd(program_id, "aff_new", FIRST + timedelta(days=2), {"revenue_minor": 70}),
        ],
    )

    # Then the window is not read until the next roll, and then counts only the day in it
    assert not recent.covers(session, program_id=program_id, first=FIRST, last=TODAY)
    recent.roll(session, first_day=FIRST)
    assert recent.covers(session, program_id=program_id, first=FIRST, last=TODAY)
    rows = _page(session, program_id, Period(FIRST, TODAY), "revenue")
    assert rows == [
        ("aff_new", [0, 0, 0, 70, 0, 0, 0, 0, 0]),
        ("aff_a", [2, 0, 0, 0, 0, 0, 0, 0, 0]),
    ]


@pytest.fixture
def committed_program(runtime: Runtime) -> Iterator[str]:
    """A program id whose rollup rows are committed (two transactions see them)
    and deleted at the end."""
    program_id = f"prog_{secrets.token_hex(4)}"
    yield program_id
    with transaction(runtime.sessions) as session:
        for table in (DailyStats, ProgramDailyStats, PeriodStats, RecentStats):
            session.execute(delete(table).where(table.program_id == program_id))


def test_a_roll_waits_for_a_writer_that_already_added_to_the_window(
    runtime: Runtime, committed_program: str
) -> None:
    # Given a window that starts before FIRST, and a writer adding a day that is about
    # to leave it (the row takes it: still in the window as far as the writer knows)
    program_id = committed_program
    leaving = FIRST - timedelta(days=1)
    with transaction(runtime.sessions) as session:
        service.add_many(
            session, [RollupAdd(program_id, "aff_a", leaving - timedelta(days=3), {"clicks": 1})]
        )
        service.add_many(session, [RollupAdd(program_id, "aff_a", FIRST, {"clicks": 10})])
    writer_added = threading.Event()
    release_writer = threading.Event()
    roll_done = threading.Event()

    def writer() -> None:
        with transaction(runtime.sessions) as session:
            service.add_many(
                session, [RollupAdd(program_id, "aff_a", leaving, {"revenue_minor": 900})]
            )
            writer_added.set()
            release_writer.wait(10)

    def roller() -> None:
        with transaction(runtime.sessions) as session:
            recent.roll(session, first_day=FIRST)
        roll_done.set()

    threads = [threading.Thread(target=writer), threading.Thread(target=roller)]
    threads[0].start()
    assert writer_added.wait(10)
    # When the roll starts while the writer has not committed
    threads[1].start()
    clock.sleep(0.3)
    assert not roll_done.is_set()  # it waits for the writer
    release_writer.set()
    for thread in threads:
        thread.join(15)
    assert roll_done.is_set()

    # Then the day that left the window is out of it, the writer's part included
    with runtime.sessions() as session:
        assert recent.covers(session, program_id=program_id, first=FIRST, last=TODAY)
        row = session.get_one(RecentStats, (program_id, "aff_a"))
        assert (row.first_day, row.clicks, row.revenue_minor) == (FIRST, 10, 0)
        assert _page(session, program_id, Period(FIRST, TODAY), "clicks") == [
            ("aff_a", [10, 0, 0, 0, 0, 0, 0, 0, 0])
        ]


def test_a_writer_after_the_roll_leaves_out_a_day_before_the_window(
    runtime: Runtime, committed_program: str
) -> None:
    program_id = committed_program
    with transaction(runtime.sessions) as session:
        service.add_many(
            session, [RollupAdd(program_id, "aff_a", FIRST - timedelta(days=5), {"clicks": 4})]
        )
        recent.roll(session, first_day=FIRST)
    with transaction(runtime.sessions) as session:
        service.add_many(
            session,
            [
                RollupAdd(program_id, "aff_a", FIRST - timedelta(days=1), {"clicks": 100}),
                RollupAdd(program_id, "aff_a", TODAY, {"clicks": 3}),
            ],
        )
    with runtime.sessions() as session:
        row = session.get_one(RecentStats, (program_id, "aff_a"))
        assert (row.first_day, row.clicks) == (FIRST, 3)
        daily = defaultdict(int)
        for day, clicks in session.execute(
            select(DailyStats.day, DailyStats.clicks).where(DailyStats.program_id == program_id)
        ):
            daily[day] += clicks
        assert daily == {FIRST - timedelta(days=5): 4, FIRST - timedelta(days=1): 100, TODAY: 3}


def test_the_worker_rolls_the_window_to_its_day(runtime: Runtime, committed_program: str) -> None:
    program_id = committed_program
    with transaction(runtime.sessions) as session:
        service.add_many(
            session, [RollupAdd(program_id, "aff_a", FIRST - timedelta(days=3), {"clicks": 1})]
        )
    tasks = {task.name: task for task in runtime.registry().periodic}
    with transaction(runtime.sessions) as session:
        tasks["roll_recent_window"].run(session, datetime.combine(TODAY, time(0, 5), UTC))
    with runtime.sessions() as session:
        assert session.get_one(RecentStats, (program_id, "aff_a")).first_day == FIRST
