from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
