"""ISO weeks in `period_stats` (grain 'week', first_day the Monday), filled
from `daily_stats`: the weekly report's week is then one row per affiliate
instead of four, whatever the traffic.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-25 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
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


def upgrade() -> None:
    # Every piece of SQL below is built from constants of this file.
    figures = ", ".join(FIGURES)
    sums = ", ".join(f"sum({name})" for name in FIGURES)
    if op.get_bind().dialect.name == "postgresql":
        monday = """date_trunc('week', "day")::date"""  # ISO: weeks start on Monday
    else:
        # 'weekday 0' moves to the Sunday ending the week (a Sunday stays), 6 days back is its Monday.
        monday = """date("day", 'weekday 0', '-6 days')"""
    op.execute(
        f"INSERT INTO period_stats (program_id, affiliate_id, grain, first_day, {figures}) "  # noqa: S608
        f"SELECT program_id, affiliate_id, 'week', {monday}, {sums} FROM daily_stats "
        f"GROUP BY program_id, affiliate_id, {monday}"
    )


def downgrade() -> None:
    op.execute("DELETE FROM period_stats WHERE grain = 'week'")
