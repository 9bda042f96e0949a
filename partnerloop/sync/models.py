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
    # When the fact it reports happened (for a fanned-out copy: the domain event's
    # time); sync time is delivered_at minus this.
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    """One try at delivering an outbox message to a remote system: what it
    answered and how long it took. History, latency and replay are queries."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index(None, "destination_kind", "destination_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(32), index=True)
    destination_kind: Mapped[str] = mapped_column(String(32))
    destination_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)  # NULL: no HTTP answer
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | dead
    error: Mapped[str | None] = mapped_column(Text)
    # The start of the remote answer; it may echo personal data, so it is encrypted.
    response_enc: Mapped[str | None] = mapped_column(Text)
