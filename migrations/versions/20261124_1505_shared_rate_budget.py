"""Shared rate budget: a CRM connector's token bucket on its row, so every worker
process draws from one budget.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 15:05:10.636815
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partnerloop.core.db

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connectors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_tokens", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("rate_counted_at", partnerloop.core.db.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("connectors", schema=None) as batch_op:
        batch_op.drop_column("rate_counted_at")
        batch_op.drop_column("rate_tokens")
