"""A worker whose time the test moves (retries, Retry-After, quotas)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from partnerloop.core.clock import utcnow
from partnerloop.runtime import Runtime
from partnerloop.sync.worker import Worker


class Clock:
    """The worker's time, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def catch_up(self) -> None:
        """Never behind the real time (work committed since must be due)."""
        self.now = max(self.now, utcnow())


def worker(runtime: Runtime, clock: Clock, **settings: Any) -> Worker:
    """A worker on `clock`, with settings overridden (e.g. webhook_disable_after=3)."""
    clock.catch_up()
    tuned = dataclasses.replace(runtime, settings=runtime.settings.with_overrides(**settings))
    return tuned.make_worker(clock=clock)
