"""Inbound event ids get room for a kind prefix in front of a 255-character vendor id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch_op:
        batch_op.alter_column(
            "external_id",
            existing_type=sa.String(length=255),
            type_=sa.String(length=512),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch_op:
        batch_op.alter_column(
            "external_id",
            existing_type=sa.String(length=512),
            type_=sa.String(length=255),
            existing_nullable=False,
        )
