from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base

# The counters every rollup table carries, in this order.
FIGURES = (
    "clicks",
    "unique_clicks",
    "conversions",
    "revenue_minor",
    "commission_pending_minor",
    "commission_approved_minor",
    "commission_paid_minor",
    "commission_reversed_minor",
    "commission_declined_minor",
)


class Figures:
    """The counters every rollup table carries (FIGURES), after its key."""

    # sort_order: after the table's own key columns, in FIGURES' order.
    clicks: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    unique_clicks: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    conversions: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    revenue_minor: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    commission_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    commission_approved_minor: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    commission_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    commission_reversed_minor: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)
    commission_declined_minor: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)


class DailyStats(Figures, Base):
    """Rollup per program, affiliate and UTC day, maintained on write.

    Dashboards and /stats read these rows instead of scanning clicks, so their
    cost stays flat as traffic grows. affiliate_id is '' for unattributed orders.
    Amounts are in the program's currency (conversions must use it).
    """

    __tablename__ = "daily_stats"
    # The key leads with the day: the affiliate table reads a program's edge days
    # across all affiliates (see spans), on SQLite (no rowid) one sequential read
    # of the rows themselves. The index serves one affiliate's days (the portal).
    __table_args__ = (
        Index(None, "program_id", "affiliate_id", "day"),
        {"sqlite_with_rowid": False},
    )

    program_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    affiliate_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class ProgramDailyStats(Figures, Base):
    """Rollup per program and UTC day (all affiliates and unattributed orders
    together), maintained on write with DailyStats: the dashboard's series and
    KPIs and the weekly report read at most one row per day of the period,
    however many affiliates were active."""

    __tablename__ = "program_daily_stats"
    # SQLite: rows stored in key order, so a period is one sequential read.
    __table_args__ = {"sqlite_with_rowid": False}

    program_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class PeriodStats(Figures, Base):
    """Rollup per program, affiliate and calendar span longer than a day,
    maintained on write with DailyStats: `grain` is 'year', 'month', 'part'
    (a quarter of a month: days 1-8, 9-16, 17-24 and 25 to the end) or 'week'
    (ISO, Monday to Sunday), and first_day the first day of that span. A period's per-affiliate figures are
    a few whole spans plus or minus smaller ones (partnerloop.analytics.spans),
    so the top-affiliates table reads a few rows per affiliate whatever the
    period and however busy each day was. affiliate_id is '' for unattributed
    orders.
    """

    __tablename__ = "period_stats"
    # The key leads with the span, not the affiliate: the affiliate table reads a
    # program's span across all its affiliates, and on SQLite (no rowid) that is
    # one sequential read of the rows themselves. The index serves one affiliate
    # (the portal, /stats?affiliate_id=).
    __table_args__ = (
        Index(None, "program_id", "affiliate_id", "grain", "first_day"),
        {"sqlite_with_rowid": False},
    )

    program_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    grain: Mapped[str] = mapped_column(String(8), primary_key=True)
    first_day: Mapped[date] = mapped_column(Date, primary_key=True)
    affiliate_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class RecentStats(Figures, Base):
    """Per program and affiliate, the figures of every day from first_day on:
    the recent window (the dashboard's default 30 days), maintained on write
    with DailyStats (a day before first_day is not added) and moved forward
    once a day by the worker (partnerloop.analytics.recent). The default
    affiliate table reads one row per affiliate, nothing to add up.

    Every affiliate with a DailyStats row has a row here (so first_day can be
    moved either way, by the days in between); none for unattributed orders.
    """

    __tablename__ = "recent_stats"
    # The index answers "does every row of the program start on this day?" (its
    # earliest and latest first day) and finds the rows still to move.
    __table_args__ = (Index(None, "program_id", "first_day"), {"sqlite_with_rowid": False})

    program_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    affiliate_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_day: Mapped[date] = mapped_column(Date)


for _table in (DailyStats, ProgramDailyStats, PeriodStats, RecentStats):
    assert tuple(c.name for c in _table.__table__.columns)[-len(FIGURES) :] == FIGURES, _table
