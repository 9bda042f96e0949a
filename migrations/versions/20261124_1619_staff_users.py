"""Staff users: merchant staff who log in to the admin pages (argon2 password hash,
role, program), e-mail encrypted with a blind index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 16:19:31.923407
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partnerloop.core.db

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email_enc", sa.Text(), nullable=False),
        sa.Column("email_index", sa.String(length=40), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", partnerloop.core.db.UTCDateTime(), nullable=False),
        sa.Column("disabled_at", partnerloop.core.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_staff_users_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
        sa.UniqueConstraint("email_index", name=op.f("uq_staff_users_email_index")),
    )


def downgrade() -> None:
    op.drop_table("staff_users")
