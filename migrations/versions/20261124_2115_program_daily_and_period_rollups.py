"""Rollups that keep the dashboard flat as traffic grows: per program and day
(`program_daily_stats`: the series and KPIs) and per program, affiliate and
calendar span (`period_stats`: years, months and quarter months, for the
affiliate table), both filled from `daily_stats` so existing installs read the
same figures as before; and `daily_stats` keyed by day before affiliate (the
affiliate table reads a few edge days across all affiliates).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 21:15:49.304481
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not imported from partnerloop.analytics) so that later changes
# to the application cannot change what this migration did.
FIGURES = (
    "clicks",
    "unique_clicks",
    "conversions",
    "revenue_minor",
    "commission_pending_minor",
    "commission_approved_minor",
    "commission_paid_minor",
    "commission_reversed_minor",
    "commission_declined_minor",
)


def _figure_columns() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in FIGURES]


def upgrade() -> None:
    op.create_table(
        "period_stats",
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("grain", sa.String(length=8), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("affiliate_id", sa.String(length=32), nullable=False),
        *_figure_columns(),
        sa.PrimaryKeyConstraint(
            "program_id", "grain", "first_day", "affiliate_id", name=op.f("pk_period_stats")
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("period_stats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_period_stats_program_id_affiliate_id_grain_first_day"),
            ["program_id", "affiliate_id", "grain", "first_day"],
            unique=False,
        )
    op.create_table(
        "program_daily_stats",
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_figure_columns(),
        sa.PrimaryKeyConstraint("program_id", "day", name=op.f("pk_program_daily_stats")),
        sqlite_with_rowid=False,
    )
    _backfill()
    _rekey_daily_stats(
        key=["program_id", "day", "affiliate_id"],
        index=["program_id", "affiliate_id", "day"],
        old_index=["program_id", "day"],
        with_rowid=False,
    )


def _backfill() -> None:
    # Every piece of SQL below is built from constants of this file.
    figures = ", ".join(FIGURES)
    sums = ", ".join(f"sum({name})" for name in FIGURES)
    if op.get_bind().dialect.name == "postgresql":
        year = """date_trunc('year', "day")::date"""
        month = """date_trunc('month', "day")::date"""
        part = f"""({month} + {_part_offset('extract(day from "day")')})"""
    else:
        year = """date("day", 'start of year')"""
        month = """date("day", 'start of month')"""
        offset = _part_offset("""cast(strftime('%d', "day") as integer)""")
        part = f"""date("day", 'start of month', '+' || {offset} || ' days')"""
    program_daily = (
        f'INSERT INTO program_daily_stats (program_id, "day", {figures}) '  # noqa: S608
        f'SELECT program_id, "day", {sums} FROM daily_stats GROUP BY program_id, "day"'
    )
    op.execute(program_daily)
    for grain, first_day in (("year", year), ("month", month), ("part", part)):
        spans = (
            f"INSERT INTO period_stats (program_id, affiliate_id, grain, first_day, {figures}) "  # noqa: S608
            f"SELECT program_id, affiliate_id, '{grain}', {first_day}, {sums} FROM daily_stats "
            f"GROUP BY program_id, affiliate_id, {first_day}"
        )
        op.execute(spans)


def _part_offset(day_of_month: str) -> str:
    """Days from the 1st to the first day of the quarter month holding the day
    (quarters start on the 1st, 9th, 17th and 25th)."""
    return (
        f"(CASE WHEN {day_of_month} <= 8 THEN 0 WHEN {day_of_month} <= 16 THEN 8 "
        f"WHEN {day_of_month} <= 24 THEN 16 ELSE 24 END)"
    )


def _rekey_daily_stats(
    *, key: list[str], index: list[str], old_index: list[str], with_rowid: bool
) -> None:
    """daily_stats keyed by `key` with an index on `index` (instead of `old_index`).
    SQLite rebuilds the table (without rowid: rows stored in key order, so a day
    across all affiliates is one sequential read); PostgreSQL rebuilds the key."""
    with op.batch_alter_table(
        "daily_stats", recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
    ) as batch_op:
        batch_op.drop_index("ix_daily_stats_" + "_".join(old_index))
        batch_op.drop_constraint("pk_daily_stats", type_="primary")
        batch_op.create_primary_key("pk_daily_stats", key)
        batch_op.create_index("ix_daily_stats_" + "_".join(index), index, unique=False)


def downgrade() -> None:
    _rekey_daily_stats(
        key=["program_id", "affiliate_id", "day"],
        index=["program_id", "day"],
        old_index=["program_id", "affiliate_id", "day"],
        with_rowid=True,
    )
    op.drop_table("program_daily_stats")
    with op.batch_alter_table("period_stats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_period_stats_program_id_affiliate_id_grain_first_day"))
    op.drop_table("period_stats")
