from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class Affiliate(Base):
    __tablename__ = "affiliates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Personal data: ciphertext only; lookups by the keyed blind index.
    email_enc: Mapped[str] = mapped_column(Text)
    email_index: Mapped[str] = mapped_column(String(40), unique=True)
    name_enc: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending|approved|rejected|suspended
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Portal login (argon2id); NULL until the affiliate chose a password.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    language: Mapped[str | None] = mapped_column(String(8))  # the portal's language, if chosen
    # How to pay them (JSON: method, account holder, IBAN or PayPal e-mail), encrypted.
    payout_details_enc: Mapped[str | None] = mapped_column(Text)


class Enrollment(Base):
    """An affiliate's membership of a program, with an optional commission override."""

    __tablename__ = "enrollments"
    # One membership per affiliate and program: signing up twice is a no-op.
    __table_args__ = (UniqueConstraint("program_id", "affiliate_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    affiliate_id: Mapped[str] = mapped_column(ForeignKey("affiliates.id"), index=True)
    commission_type: Mapped[str | None] = mapped_column(String(16))
    commission_rate: Mapped[str | None] = mapped_column(String(16))
    commission_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    # Answers to the program's signup_fields (JSON), encrypted: they may be personal.
    signup_answers_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
