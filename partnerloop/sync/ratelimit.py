"""A token bucket: at most `rate` calls a second on average, `burst` at once.

Set from a vendor's published limits (HubSpot private apps: 100 requests per
10 seconds), it keeps partnerloop under the limit instead of learning it from
429s. `take` is the arithmetic on a stored state, so the state can live where
every worker process sees it (a connector's row: partnerloop.integrations.
outbound.take_budget). The vendor's 429 (with Retry-After) remains the backstop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class BucketState:
    tokens: float
    at: datetime | None  # when tokens was counted


def take(
    state: BucketState | None, *, rate: float, burst: int, now: datetime
) -> tuple[BucketState, float]:
    """Take a token: the new state, and 0.0 if one was there, else how many seconds
    until one is. No state yet: a full bucket."""
    if rate <= 0 or burst < 1:
        raise ValueError("a token bucket needs rate > 0 and burst >= 1")
    tokens = float(burst) if state is None else state.tokens
    if state is not None and state.at is not None:
        elapsed = max((now - state.at).total_seconds(), 0.0)
        tokens = min(float(burst), tokens + elapsed * rate)
    if tokens >= 1.0:
        return BucketState(tokens - 1.0, now), 0.0
    return BucketState(tokens, now), (1.0 - tokens) / rate
