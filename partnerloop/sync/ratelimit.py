"""A token bucket: at most `rate` calls a second on average, `burst` at once.

Set from a vendor's published limits (HubSpot private apps: 100 requests per
10 seconds), it keeps a worker under the limit instead of learning it from
429s. Per process: several workers each keep their own, so the vendor's 429
(with Retry-After) remains the backstop.
"""

from __future__ import annotations

import threading
from datetime import datetime


class TokenBucket:
    def __init__(self, *, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def take(self, now: datetime) -> float:
        """Take a token: 0.0 if one was there, else how many seconds until one is."""
        with self._lock:
            if self._last is not None:
                elapsed = max((now - self._last).total_seconds(), 0.0)
                self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate
