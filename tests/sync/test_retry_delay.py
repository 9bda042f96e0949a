"""A deliverer's retry_after can never make the engine raise: infinite, NaN, huge or
negative waits are clamped when the outcome is recorded (mark_failed and defer)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from partnerloop.core.db import transaction
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Outcome, Registry, Worker
from tests.support.clock import Clock

KIND = "test-retry-delay"
DAY = sync.MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        (None, 5.0),
        (math.nan, 5.0),
        (7.0, 7.0),
        (0.0, 0.0),
        (-3.0, 0.0),
        (-math.inf, 0.0),
        (math.inf, DAY),
        (1e308, DAY),
        (DAY + 1, DAY),
    ],
)
def test_retry_delay(retry_after: float | None, delay: float) -> None:
    assert sync.retry_delay(retry_after, default=5.0) == delay


@pytest.fixture
def _clean(runtime: Runtime) -> Iterator[None]:
    yield
    with transaction(runtime.sessions) as db:
        db.execute(delete(OutboxMessage).where(OutboxMessage.destination_kind == KIND))


@pytest.fixture
def _quiet_queue(runtime: Runtime) -> None:
    """Jobs other tests left due run first, so the worker below sees only its own."""
    runtime.make_worker().drain()


def _run_once(runtime: Runtime, outcome: Outcome) -> tuple[OutboxMessage, Clock]:
    """Enqueue one message, let a worker deliver it with `outcome`, return its row."""
    clock = Clock()

    def deliver(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        return outcome

    worker = Worker(
        session_factory=runtime.sessions,
        cipher=runtime.cipher,
        registry=Registry(remote={KIND: deliver}),
        max_attempts=5,
        lease_seconds=30,
        poll_seconds=0.05,
        clock=clock,
    )
    with transaction(runtime.sessions) as db:
        sync.enqueue(
            db,
            runtime.cipher,
            destination_kind=KIND,
            destination_id="http://peer.example",
            topic="test.event",
            payload={"hello": "world"},
            idempotency_key="k1",
            program_id=None,
            now=clock.now,
        )
    assert worker.run_once() == 1
    with runtime.sessions() as db:
        rows = db.query(OutboxMessage).filter(OutboxMessage.destination_kind == KIND).all()
    assert len(rows) == 1
    return rows[0], clock


@pytest.mark.usefixtures("_quiet_queue", "_clean")
@pytest.mark.parametrize(("retry_after", "wait"), [(math.inf, DAY), (1e300, DAY), (-5.0, 0.0)])
def test_a_failure_with_an_absurd_retry_after_waits_within_bounds(
    runtime: Runtime, retry_after: float, wait: float
) -> None:
    message, clock = _run_once(runtime, Outcome(ok=False, error="boom", retry_after=retry_after))

    assert (message.state, message.attempts, message.locked_by) == ("retry", 1, None)
    assert message.next_attempt_at - clock.now == timedelta(seconds=wait)


@pytest.mark.usefixtures("_quiet_queue", "_clean")
def test_a_failure_with_a_nan_retry_after_backs_off_as_without_one(runtime: Runtime) -> None:
    message, clock = _run_once(runtime, Outcome(ok=False, error="boom", retry_after=math.nan))

    assert (message.state, message.attempts, message.locked_by) == ("retry", 1, None)
    # The first attempt's own backoff: between half and all of 2 s.
    assert timedelta(seconds=1) <= message.next_attempt_at - clock.now <= timedelta(seconds=2)


@pytest.mark.usefixtures("_quiet_queue", "_clean")
@pytest.mark.parametrize(
    ("retry_after", "wait"), [(math.inf, DAY), (math.nan, 1.0), (1e300, DAY), (-5.0, 0.0)]
)
def test_a_deferral_with_an_absurd_retry_after_waits_within_bounds(
    runtime: Runtime, retry_after: float, wait: float
) -> None:
    outcome = Outcome(ok=False, error="paused", retry_after=retry_after, deferred=True)
    message, clock = _run_once(runtime, outcome)

    assert (message.state, message.attempts, message.locked_by) == ("pending", 0, None)
    assert message.next_attempt_at - clock.now == timedelta(seconds=wait)
