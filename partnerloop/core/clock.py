"""Time. Services take `now` as an argument where a rule depends on it (cookie
windows, hold periods), so tests move time by passing it, not by patching."""

from __future__ import annotations

import re
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


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_datetime(text: str) -> datetime:
    """ISO 8601 / RFC 3339 as shops send it, to an aware UTC datetime. No offset
    means UTC (WooCommerce's *_gmt fields); digits past microseconds (Shopify's
    nanosecond timestamps) are dropped. Raises ValueError."""
    cleaned = _FRACTION.sub(r"\1", text.strip())
    return ensure_utc(datetime.fromisoformat(cleaned))
