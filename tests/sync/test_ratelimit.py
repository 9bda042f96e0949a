"""The token bucket: a burst at once, then the average rate, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from partnerloop.sync.ratelimit import BucketState, take

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Bucket:
    """The stored state threaded through `take`, as the connector row keeps it."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.state: BucketState | None = None

    def take(self, now: datetime) -> float:
        self.state, wait = take(self.state, rate=self.rate, burst=self.burst, now=now)
        return wait


def test_a_burst_then_one_token_per_interval() -> None:
    bucket = Bucket(rate=10.0, burst=3)  # 10 a second, 3 at once

    assert [bucket.take(T0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(T0) == pytest.approx(0.1)  # empty: the next token in 0.1 s
    assert bucket.take(T0 + timedelta(seconds=0.05)) == pytest.approx(0.05)
    assert bucket.take(T0 + timedelta(seconds=0.1)) == 0.0
    # A long quiet spell refills to the burst, not beyond.
    later = T0 + timedelta(hours=1)
    assert [bucket.take(later) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert bucket.take(later) > 0


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        take(None, rate=0, burst=1, now=T0)
    with pytest.raises(ValueError, match="burst >= 1"):
        take(None, rate=1, burst=0, now=T0)
