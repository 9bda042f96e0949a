from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class PrivacyRequest(Base):
    """A data-subject request a shop passed on (e.g. Shopify's mandatory privacy
    topics): recorded when it arrives, acted on (export, erasure) by the privacy
    workflow within the legal deadline."""

    __tablename__ = "privacy_requests"
    # A redelivered request is the same request.
    __table_args__ = (UniqueConstraint("program_id", "source", "external_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    source: Mapped[str] = mapped_column(String(96))  # e.g. connector:con_...
    external_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))  # data_request | customer_redact | shop_redact
    customer_external_id: Mapped[str | None] = mapped_column(String(255))
    # Who and which orders, as the shop sent it: personal data, so encrypted.
    details_enc: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # open | done
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
