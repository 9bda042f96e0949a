"""An index on the rollup by program and day: the dashboard reads a program's
period across all its affiliates.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24 19:15:19.019128
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("daily_stats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_daily_stats_program_id_day"), ["program_id", "day"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("daily_stats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_daily_stats_program_id_day"))
