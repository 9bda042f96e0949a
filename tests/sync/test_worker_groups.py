"""Local jobs run several to a transaction (Worker._run_together): one commit for
the group, yet each job's effects and its done mark stay all-or-nothing, and a
job that fails, rejects or lost its lease touches none of the others."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.core.db import transaction
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.sync.models import InboundEvent, OutboxMessage
from partnerloop.sync.worker import Registry, RejectEvent
from tests.conftest import Backend
from tests.sync.test_worker import Clock, _clean, _quiet_queue, _receive, _worker

__all__ = ["_clean", "_quiet_queue"]  # autouse fixtures shared with test_worker.py


def _effect(session: Session, key: str, now: datetime) -> None:
    """A job's write in our own database: an outbox row keyed by the job."""
    session.add(
        OutboxMessage(
            id=f"msg_EFFECT{abs(hash(key)) % 10**20:020d}",
            destination_kind="test-effect",
            destination_id="x",
            topic="t",
            idempotency_key=key,
            payload_enc="x",
            state="delivered",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    session.flush()


def _effects(runtime: Runtime) -> Counter[str]:
    with runtime.sessions() as db:
        return Counter(
            db.scalars(
                select(OutboxMessage.idempotency_key).where(
                    OutboxMessage.destination_kind == "test-effect"
                )
            )
        )


def _states(runtime: Runtime, ids: list[str]) -> list[tuple[str, int, str | None]]:
    with runtime.sessions() as db:
        rows = {e.id: e for e in db.scalars(select(InboundEvent).where(InboundEvent.id.in_(ids)))}
    return [
        (rows[i].state, rows[i].attempts, (rows[i].last_error or "").split("\n")[0] or None)
        for i in ids
    ]


def test_a_failing_and_a_rejected_job_leave_the_rest_of_their_group_committed(
    runtime: Runtime,
) -> None:
    clock = Clock()
    ids = [_receive(runtime, "test-group", f"g-{n}", clock) for n in range(8)]
    runs: Counter[str] = Counter()

    def handle(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        runs[event.external_id] += 1
        _effect(session, event.external_id, now)  # rolled back with its savepoint on failure
        if event.external_id == "g-2":
            raise RuntimeError("database said no")
        if event.external_id == "g-5":
            raise RejectEvent("not an order")

    worker = _worker(runtime, Registry(inbound={"test-group": handle}), clock)
    assert worker.run_once() == 8

    assert _states(runtime, ids) == [
        ("processed", 1, None),
        ("processed", 1, None),
        ("retry", 1, "RuntimeError: database said no"),
        ("processed", 1, None),
        ("processed", 1, None),
        ("rejected", 1, "not an order"),
        ("processed", 1, None),
        ("processed", 1, None),
    ]
    # Every job's effect exactly once; none of the failed or rejected ones.
    assert _effects(runtime) == Counter({f"g-{n}": 1 for n in (0, 1, 3, 4, 6, 7)})
    # The two that failed in the group ran once more alone, where their outcome is recorded.
    assert runs == Counter({f"g-{n}": 2 if n in (2, 5) else 1 for n in range(8)})


def test_a_job_whose_lease_was_taken_over_is_left_to_its_new_worker(
    runtime: Runtime, backend: Backend
) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite's single writer cannot take a lease over inside another's group")
    clock = Clock()
    ids = [_receive(runtime, "test-lease", f"l-{n}", clock) for n in range(4)]

    def handle(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        if event.external_id == "l-0":
            # Meanwhile another worker took over l-1 (its lease ran out).
            with transaction(runtime.sessions) as other:
                other.get_one(InboundEvent, ids[1]).locked_by = "another-worker"
        _effect(session, event.external_id, now)

    worker = _worker(runtime, Registry(inbound={"test-lease": handle}), clock)
    worker.run_once()

    with runtime.sessions() as db:
        second = db.get_one(InboundEvent, ids[1])
        assert (second.state, second.locked_by) == ("pending", "another-worker")
    assert _effects(runtime) == Counter({"l-0": 1, "l-2": 1, "l-3": 1})


def test_fanout_messages_run_in_groups_and_each_copy_is_queued_once(runtime: Runtime) -> None:
    clock = Clock()
    copies: list[str] = []
    lock = threading.Lock()

    def copy(
        session: Session, message: OutboxMessage, payload: dict[str, Any], now: datetime
    ) -> None:
        with lock:
            copies.append(message.idempotency_key)
        _effect(session, f"copy-{message.idempotency_key}", now)

    with transaction(runtime.sessions) as db:
        for n in range(30):
            sync.enqueue(
                db,
                runtime.cipher,
                destination_kind="test-local",
                destination_id="events",
                topic="t",
                payload={"n": n},
                idempotency_key=f"f-{n}",
                program_id=None,
                now=clock.now,
            )
    worker = _worker(runtime, Registry(local={"test-local": copy}), clock)
    assert worker.drain() == 30

    assert sorted(copies) == sorted(f"f-{n}" for n in range(30))
    assert _effects(runtime) == Counter({f"copy-f-{n}": 1 for n in range(30)})
    with runtime.sessions() as db:
        states = Counter(
            db.scalars(
                select(OutboxMessage.state).where(OutboxMessage.destination_kind == "test-local")
            )
        )
    assert states == Counter({"delivered": 30})
