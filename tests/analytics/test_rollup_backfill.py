"""Migrations 0015, 0016 and 0017 fill the new rollups (the ISO-week spans,
the recent window) from daily_stats, so an install that upgrades reads the
same figures as before."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, insert, select, text

from partnerloop.analytics import recent, spans
from partnerloop.analytics.models import (
    FIGURES,
    DailyStats,
    PeriodStats,
    ProgramDailyStats,
    RecentStats,
)
from partnerloop.core.db import make_engine
from partnerloop.core.migrate import alembic_config
from tests.conftest import PG_ADMIN_URL, Backend


@pytest.fixture
def engine(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    # A database of its own: the shared test database is already at head.
    if backend.name == "sqlite":
        built = make_engine(f"sqlite:///{tmp_path_factory.mktemp('backfill') / 'b.db'}")
        yield built
        built.dispose()
        return
    schema = f"pl_backfill_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    built = make_engine(f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}")
    try:
        yield built
    finally:
        built.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _migrate(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


DAYS = [
    date(2025, 12, 8),
    date(2025, 12, 9),
    date(2025, 12, 24),
    date(2025, 12, 25),
    date(2025, 12, 31),
    date(2026, 1, 1),
    date(2026, 1, 16),
    date(2026, 1, 17),
    date(2024, 2, 29),
]


def test_the_migration_fills_the_new_rollups_from_daily_stats(engine: Engine) -> None:
    # Given an install at 0014 with daily rollup rows of two programs
    _migrate(engine, "0014")
    rows = []
    for n, day in enumerate(DAYS):
        for program_id, affiliate_id in (("prog_a", "aff_a"), ("prog_a", ""), ("prog_b", "aff_a")):
            rows.append(
                {
                    "program_id": program_id,
                    "affiliate_id": affiliate_id,
                    "day": day,
                    **{name: (n + 1) * (k + 1) - 3 * (k == 4) for k, name in enumerate(FIGURES)},
                }
            )
    with engine.begin() as connection:
        connection.execute(insert(DailyStats), rows)

    # When it is upgraded
    _migrate(engine, "head")

    # Then every program-day and every affiliate's year, month, quarter month and
    # ISO week is the sum of its days
    program_daily: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * len(FIGURES))
    period: dict[tuple[str, str, str, date], list[int]] = defaultdict(lambda: [0] * len(FIGURES))
    for row in rows:
        figures = [row[name] for name in FIGURES]
        keys = [(program_daily, (row["program_id"], row["day"]))] + [
            (period, (row["program_id"], row["affiliate_id"], grain, first_day))
            for grain, first_day in spans.span_starts(row["day"])
        ]
        for table, key in keys:
            table[key] = [a + b for a, b in zip(table[key], figures, strict=True)]  # type: ignore[index]
    with engine.connect() as connection:
        got_program_daily = {
            (r.program_id, r.day): [getattr(r, n) for n in FIGURES]
            for r in connection.execute(select(ProgramDailyStats))
        }
        got_period = {
            (r.program_id, r.affiliate_id, r.grain, r.first_day): [getattr(r, n) for n in FIGURES]
            for r in connection.execute(select(PeriodStats))
        }
    assert got_program_daily == dict(program_daily)
    assert got_period == dict(period)
    assert ("prog_a", "aff_a", "part", date(2025, 12, 25)) in got_period
    assert ("prog_a", "", "part", date(2024, 2, 25)) in got_period
    assert ("prog_b", "aff_a", "year", date(2025, 1, 1)) in got_period
    # a Thursday of ISO week 2026-W01 belongs to the week of Monday 2025-12-29
    assert ("prog_a", "aff_a", "week", date(2025, 12, 29)) in got_period
    # per affiliate: 3 years, 3 months, 8 quarter months and 5 ISO weeks
    assert len(got_period) == 3 * (3 + 3 + 8 + 5)


def test_the_recent_window_is_filled_for_every_affiliate_with_days(engine: Engine) -> None:
    # Given an install at 0016 with days inside and before the last 30 days
    _migrate(engine, "0016")
    first_day = recent.window_first_day(datetime.now(UTC).date())
    rows = [
        ("prog_a", "aff_a", first_day, 5),
        ("prog_a", "aff_a", first_day - timedelta(days=1), 700),
        ("prog_a", "aff_a", first_day + timedelta(days=20), 11),
        ("prog_a", "aff_old", first_day - timedelta(days=90), 3),
        ("prog_a", "", first_day + timedelta(days=2), 9),
        ("prog_b", "aff_a", first_day + timedelta(days=1), 2),
    ]
    with engine.begin() as connection:
        connection.execute(
            insert(DailyStats),
            [
                {
                    "program_id": p,
                    "affiliate_id": a,
                    "day": d,
                    **dict.fromkeys(FIGURES, 0),
                    "clicks": n,
                }
                for p, a, d, n in rows
            ],
        )

    # When it is upgraded
    _migrate(engine, "head")

    # Then every affiliate with days has a window row from today's window on (an
    # affiliate with only older days a zero one), unattributed figures none
    with engine.connect() as connection:
        got = {
            (r.program_id, r.affiliate_id): (r.first_day, r.clicks)
            for r in connection.execute(select(RecentStats))
        }
    assert got == {
        ("prog_a", "aff_a"): (first_day, 16),
        ("prog_a", "aff_old"): (first_day, 0),
        ("prog_b", "aff_a"): (first_day, 2),
    }
