"""CRM values on CRM links: what the CRM last said (segment, lifecycle stage, tags),
for the write-back to the shop; and CRM webhooks find the customer by the CRM's id.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 14:35:57.820524
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("crm_values_enc", sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_crm_links_connector_id_remote_id"),
            ["connector_id", "remote_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("crm_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_links_connector_id_remote_id"))
        batch_op.drop_column("crm_values_enc")
