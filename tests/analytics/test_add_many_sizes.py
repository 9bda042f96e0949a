"""add_many with many rows at once: split into several statements, each row
counted once, and added again on a second call."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from partnerloop.analytics import service as analytics
from partnerloop.analytics.models import DailyStats, ProgramDailyStats
from partnerloop.core.db import transaction
from partnerloop.runtime import Runtime
from tests.factories.programs import create_program


def test_hundreds_of_rows_in_one_call_are_each_added_once(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        program_id = create_program(session).id
    day = date(2026, 3, 14)
    rows = [
        analytics.RollupAdd(
            program_id=program_id,
            affiliate_id=f"aff_{n:026d}",
            day=day,
            increments={"clicks": n + 1, "unique_clicks": 1},
        )
        for n in range(777)  # not a power of two, more than one statement holds
    ]
    for _ in range(2):
        with transaction(runtime.sessions) as session:
            analytics.add_many(session, rows)

    expected = 2 * sum(n + 1 for n in range(777))
    with runtime.sessions() as session:
        per_affiliate = session.execute(
            select(
                func.count(), func.sum(DailyStats.clicks), func.sum(DailyStats.unique_clicks)
            ).where(DailyStats.program_id == program_id)
        ).one()
        assert tuple(per_affiliate) == (777, expected, 2 * 777)
        assert session.execute(
            select(ProgramDailyStats.clicks, ProgramDailyStats.unique_clicks).where(
                ProgramDailyStats.program_id == program_id, ProgramDailyStats.day == day
            )
        ).one() == (expected, 2 * 777)
