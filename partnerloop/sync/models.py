from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class InboundEvent(Base):
    """The inbox: something a remote system told us, stored before we answer it.

    States: pending -> processed; pending -> retry -> ... -> dead (after the
    last try); rejected (validation failed: kept with its reason, replayable).
    """

    __tablename__ = "inbound_events"
    # Exactly once: a vendor's redelivery of the same event id is the same row.
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index(None, "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # which handler processes it
    source: Mapped[str] = mapped_column(String(96))  # kind + the instance, e.g. postback:prg_..
    # Room for a kind prefix in front of a 255-character vendor id (e.g. conversion:<order id>).
    external_id: Mapped[str] = mapped_column(String(512))
    topic: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # The raw body may carry personal data: encrypted like every other PII column.
    payload_enc: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """The outbox: a call we owe a remote system, written in the same transaction
    as the change it reports, and kept until the remote side has accepted it."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        # The same fact is queued once per destination, however often it is published.
        UniqueConstraint(
            "destination_kind",
            "destination_id",
            "idempotency_key",
            name="uq_outbox_messages_destination_key",
        ),
        Index(None, "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    destination_kind: Mapped[str] = mapped_column(String(32))
    destination_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    program_id: Mapped[str | None] = mapped_column(String(32), index=True)
    payload_enc: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # pending|retry|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
