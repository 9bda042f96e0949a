from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class Commission(Base):
    __tablename__ = "commissions"
    __table_args__ = (
        # Nothing doubled: one commission per order, affiliate and tier, whatever
        # the number of replays or concurrent reports of the same order.
        UniqueConstraint("conversion_id", "affiliate_id", "tier"),
        Index(None, "program_id", "state", "hold_until"),
        Index(None, "affiliate_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    conversion_id: Mapped[str] = mapped_column(ForeignKey("conversions.id"))
    order_id: Mapped[str] = mapped_column(String(255))
    affiliate_id: Mapped[str] = mapped_column(ForeignKey("affiliates.id"))
    tier: Mapped[int] = mapped_column(Integer, default=0)
    # pending -> approved -> paid; pending|approved -> declined; any -> reversed
    state: Mapped[str] = mapped_column(String(16))
    rule_type: Mapped[str] = mapped_column(String(16))
    rule_value: Mapped[str] = mapped_column(String(32))  # rate in percent, or amount_minor
    base_amount_minor: Mapped[int] = mapped_column(BigInteger)  # order amount it came from
    original_amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # after refunds
    currency: Mapped[str] = mapped_column(String(3))
    # Refunded after payout: owed back by the affiliate, netted by the next payout.
    clawback_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # The rollup row this commission is counted in (the conversion's UTC day).
    stats_day: Mapped[date] = mapped_column(Date)
    hold_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why staff declined it: shown to the affiliate, so about the sale, never about a person.
    decline_reason: Mapped[str | None] = mapped_column(Text)
