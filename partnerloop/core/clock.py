"""Time. Services take `now` as an argument where a rule depends on it (cookie
windows, hold periods), so tests move time by passing it, not by patching."""

from __future__ import annotations

from datetime import UTC, date, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def day_of(moment: datetime) -> date:
    """The UTC calendar day rollups are keyed by."""
    return moment.astimezone(UTC).date()


def ensure_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
