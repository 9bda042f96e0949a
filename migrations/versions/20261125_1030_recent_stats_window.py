"""The recent window (`recent_stats`): per program and affiliate, the figures
of every day from `first_day` on, so the dashboard's default 30 days rank
affiliates from one row each. Filled from `daily_stats` with the window as of
today (UTC); every affiliate with daily figures gets a row (possibly zero), so
the worker can later move any row's first day by the days in between.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-25 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
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
WINDOW_DAYS = 30


def upgrade() -> None:
    op.create_table(
        "recent_stats",
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("affiliate_id", sa.String(length=32), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in FIGURES),
        sa.PrimaryKeyConstraint("program_id", "affiliate_id", name=op.f("pk_recent_stats")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("recent_stats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recent_stats_program_id_first_day"),
            ["program_id", "first_day"],
            unique=False,
        )
    first_day = datetime.now(UTC).date() - timedelta(days=WINDOW_DAYS - 1)
    # Every piece of SQL below is built from constants of this file.
    sums = ", ".join(f"sum(CASE WHEN day >= :first_day THEN {name} ELSE 0 END)" for name in FIGURES)
    op.get_bind().execute(
        sa.text(
            f"INSERT INTO recent_stats (program_id, affiliate_id, first_day, {', '.join(FIGURES)}) "  # noqa: S608
            f"SELECT program_id, affiliate_id, :first_day, {sums} FROM daily_stats "
            "WHERE affiliate_id != '' GROUP BY program_id, affiliate_id"
        ).bindparams(sa.bindparam("first_day", first_day, type_=sa.Date()))
    )


def downgrade() -> None:
    with op.batch_alter_table("recent_stats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recent_stats_program_id_first_day"))
    op.drop_table("recent_stats")
