"""The affiliate portal (passwords, payout details, signup answers, portal
sessions), commission decline reasons, white label (branding, program domains), staff languages, the
program's two-factor requirement, and the audit log.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 18:13:58.138813
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partnerloop.core.db

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("at", partnerloop.core.db.UTCDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_kind", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_log_program_id_at"), ["program_id", "at"], unique=False
        )

    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("affiliate_id", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", partnerloop.core.db.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", partnerloop.core.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", partnerloop.core.db.UTCDateTime(), nullable=False),
        sa.Column("ended_at", partnerloop.core.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["affiliate_id"],
            ["affiliates.id"],
            name=op.f("fk_portal_sessions_affiliate_id_affiliates"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_portal_sessions_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sessions")),
    )
    with op.batch_alter_table("portal_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_portal_sessions_affiliate_id"), ["affiliate_id"], unique=False
        )

    op.create_table(
        "program_domains",
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=8), nullable=False),
        sa.Column("created_at", partnerloop.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_program_domains_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_program_domains")),
    )
    with op.batch_alter_table("program_domains", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_program_domains_program_id"), ["program_id"], unique=False
        )

    with op.batch_alter_table("affiliates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("payout_details_enc", sa.Text(), nullable=True))

    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signup_answers_enc", sa.Text(), nullable=True))

    with op.batch_alter_table("commissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decline_reason", sa.Text(), nullable=True))

    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("require_two_factor", sa.Boolean(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "signup_approval", sa.String(length=8), server_default="manual", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("signup_fields", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("portal_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("logo_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("brand_color", sa.String(length=7), nullable=True))
        batch_op.add_column(sa.Column("accent_color", sa.String(length=7), nullable=True))
        batch_op.add_column(
            sa.Column("portal_texts", sa.JSON(), server_default="{}", nullable=False)
        )
        batch_op.add_column(sa.Column("mail_sender", sa.String(length=320), nullable=True))

    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("language")

    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.drop_column("mail_sender")
        batch_op.drop_column("portal_texts")
        batch_op.drop_column("accent_color")
        batch_op.drop_column("brand_color")
        batch_op.drop_column("logo_url")
        batch_op.drop_column("portal_name")
        batch_op.drop_column("signup_fields")
        batch_op.drop_column("signup_approval")
        batch_op.drop_column("require_two_factor")

    with op.batch_alter_table("commissions", schema=None) as batch_op:
        batch_op.drop_column("decline_reason")

    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("signup_answers_enc")

    with op.batch_alter_table("affiliates", schema=None) as batch_op:
        batch_op.drop_column("payout_details_enc")
        batch_op.drop_column("language")
        batch_op.drop_column("password_hash")

    with op.batch_alter_table("program_domains", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_program_domains_program_id"))

    op.drop_table("program_domains")
    with op.batch_alter_table("portal_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_portal_sessions_affiliate_id"))

    op.drop_table("portal_sessions")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_program_id_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
