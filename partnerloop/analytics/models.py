from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base


class DailyStats(Base):
    """Rollup per program, affiliate and UTC day, maintained on write.

    Dashboards and /stats read these rows instead of scanning clicks, so their
    cost stays flat as traffic grows. affiliate_id is '' for unattributed orders.
    Amounts are in the program's currency (conversions must use it).
    """

    __tablename__ = "daily_stats"
    # The dashboard reads a program's period across all affiliates (per day
    # for the series): without this it would read every row of the program.
    __table_args__ = (Index(None, "program_id", "day"),)

    program_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    affiliate_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    conversions: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_approved_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_reversed_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_declined_minor: Mapped[int] = mapped_column(BigInteger, default=0)
