from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    cookie_days: Mapped[int] = mapped_column(Integer)
    # Hosts a link may send shoppers to; a subdomain of a listed host counts.
    allowed_domains: Mapped[list[str]] = mapped_column(JSON)
    commission_type: Mapped[str] = mapped_column(String(16))  # percentage | fixed
    commission_rate: Mapped[str | None] = mapped_column(String(16))  # Decimal text, percent
    commission_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    hold_days: Mapped[int] = mapped_column(Integer)
    # Subscription renewals earn a commission again (R12) only when this is set.
    recurring_commission: Mapped[bool] = mapped_column(Boolean, default=False)
    # SHA-256 of the S2S postback token; unique so a token names exactly one program.
    postback_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
