from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class Link(Base):
    __tablename__ = "links"
    __table_args__ = (Index(None, "program_id", "affiliate_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    affiliate_id: Mapped[str] = mapped_column(ForeignKey("affiliates.id"))
    # The public short code in /r/{code}; unique across programs.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    destination_url: Mapped[str] = mapped_column(Text)
    sub1: Mapped[str | None] = mapped_column(String(255))
    sub2: Mapped[str | None] = mapped_column(String(255))
    sub3: Mapped[str | None] = mapped_column(String(255))
    sub4: Mapped[str | None] = mapped_column(String(255))
    sub5: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Coupon(Base):
    __tablename__ = "coupons"
    # A code names one affiliate within a program (stored upper-cased).
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    affiliate_id: Mapped[str] = mapped_column(ForeignKey("affiliates.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Click(Base):
    """One recorded click. The hottest table: few indexes and no foreign keys, on
    purpose (each costs every insert; links are never deleted, only disabled)."""

    __tablename__ = "clicks"
    __table_args__ = (Index(None, "program_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(32))
    link_id: Mapped[str] = mapped_column(String(32))
    affiliate_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip_enc: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    device: Mapped[str] = mapped_column(String(16))
    browser: Mapped[str] = mapped_column(String(32))
    os: Mapped[str] = mapped_column(String(32))
    is_bot: Mapped[bool] = mapped_column(Boolean)
    # First click from this browser for this program within the cookie window.
    is_unique: Mapped[bool] = mapped_column(Boolean)
    referrer: Mapped[str | None] = mapped_column(Text)
    landing_url: Mapped[str] = mapped_column(Text)
    sub1: Mapped[str | None] = mapped_column(String(255))
    sub2: Mapped[str | None] = mapped_column(String(255))
    sub3: Mapped[str | None] = mapped_column(String(255))
    sub4: Mapped[str | None] = mapped_column(String(255))
    sub5: Mapped[str | None] = mapped_column(String(255))
