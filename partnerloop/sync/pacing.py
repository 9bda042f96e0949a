"""Pacing: the worker inside `serve` gives way while serve answers a burst.

A `partnerloop worker` process gives up CPU priority with Unix nice
(PARTNERLOOP_WORKER_NICE). The worker inside `serve` (SQLite's default) is a
thread of the server process: nice cannot reach it past the interpreter's one
lock, and its transactions hold SQLite's one write lock that every webhook
batch needs too. So it paces itself: while the HTTP side reports traffic, it
rests after each job for as long as that job took, scaled so that it runs only
its share of the time; the share is the one nice gives a process
(CFS: each nice step weighs 1.25x less, so nice 10 is about a tenth). When the
traffic stops, it runs flat out again and drains what the burst left in the
inbox. Nothing waits forever: the share is never zero and one rest is at most
MAX_REST_SECONDS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# How long one report of traffic counts (a webhook batch commits every few ms under load).
BUSY_WINDOW_SECONDS = 0.25
MAX_REST_SECONDS = 0.5


def share_of_nice(nice: int) -> float:
    """The CPU share of a process at `nice` next to one at 0 (Linux CFS weights)."""
    return 1.0 / (1.0 + 1.25**nice) if nice > 0 else 1.0


class Pacer:
    def __init__(
        self,
        share: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rest: Callable[[float], object] | None = None,
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError("share must be in (0, 1]")
        self._factor = 1.0 / share - 1.0
        self._clock = clock
        self._stop = threading.Event()
        self._rest = rest or self._stop.wait
        self._busy_until = 0.0

    def busy(self) -> None:
        """The HTTP side had traffic just now (cheap: called per commit)."""
        self._busy_until = self._clock() + BUSY_WINDOW_SECONDS

    def after_job(self, seconds: float) -> None:
        """Called by the worker after a job that took `seconds`; rests if serve is busy."""
        if self._factor and self._clock() < self._busy_until:
            self._rest(min(seconds * self._factor, MAX_REST_SECONDS))

    def release(self) -> None:
        """Stop resting (shutdown): a resting worker returns at once."""
        self._stop.set()


NO_PACING = Pacer(1.0)
