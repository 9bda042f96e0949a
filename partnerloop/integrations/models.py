from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class Connector(Base):
    """A merchant's connection to one shop (or, later, a CRM): where its webhooks
    come in, the secret that signs them, and how to call its API."""

    __tablename__ = "connectors"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), index=True)
    # shopify | woocommerce | magento | stripe (in); webhook (out)
    kind: Mapped[str] = mapped_column(String(32))
    # Non-secret settings (shop domain, store URL, api_base_url); validated per kind.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The webhook signing secret, and the one before it while a rotation settles.
    secret_enc: Mapped[str] = mapped_column(Text)
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    # API credentials (consumer secret, access token) as an encrypted JSON object.
    credentials_enc: Mapped[str | None] = mapped_column(Text)
    # Pull progress: the high-water mark of backfills and scheduled pulls.
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Outgoing connectors stop after too many failures in a row, until re-enabled.
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | disabled
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # CRMs: the field mapping and conflict policies (NULL: the kind's defaults), and
    # a pause until a vendor's daily quota resets.
    mapping: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    conflicts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The CRM's rate budget (a token bucket), shared by every worker process.
    rate_tokens: Mapped[float | None] = mapped_column(Float)
    rate_counted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SyncDecision(Base):
    """The sync log: for each field partnerloop considered writing to a CRM, what
    the CRM had, what partnerloop had, what was written and why (conflict policy)."""

    __tablename__ = "sync_log"
    __table_args__ = (Index(None, "connector_id", "customer_id", "decided_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    connector_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(32))
    field: Mapped[str] = mapped_column(String(100))
    # Field values can be personal data (an e-mail, a name): encrypted.
    old_enc: Mapped[str | None] = mapped_column(Text)
    new_enc: Mapped[str | None] = mapped_column(Text)
    written: Mapped[bool] = mapped_column(Boolean)
    policy: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CrmLink(Base):
    """One customer at one remote system (a CRM, or a shop written back to): the
    remote id for them, the per-customer lease that keeps two deliveries from
    overtaking each other, and the values the CRM last told us (segment,
    lifecycle stage, tags) for the write-back to the shop."""

    __tablename__ = "crm_links"
    __table_args__ = (
        UniqueConstraint("connector_id", "customer_id"),
        Index(None, "connector_id", "remote_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    connector_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    remote_id: Mapped[str | None] = mapped_column(String(64))
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # {property: {value, at}}, encrypted: tags and segments can say a lot about a person.
    crm_values_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
