"""The worker against a real database and a real HTTP peer: retries with backoff
and jitter, 429 + Retry-After, dead letters, replay, leases, fan-out."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.http import retry_after_seconds
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.sync.fanout import Destination, make_fanout
from partnerloop.sync.models import InboundEvent, OutboxMessage
from partnerloop.sync.worker import Batched, Outcome, Registry, Worker
from tests.conftest import Backend
from tests.support.http import Reply, ScriptedServer

KIND = "test-http"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def http_deliverer(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
    response = httpx.post(
        message.destination_id, json=payload, headers={"Idempotency-Key": message.id}, timeout=5
    )
    if response.is_success:
        return Outcome(ok=True)
    return Outcome(
        ok=False,
        error=f"HTTP {response.status_code}",
        retry_after=retry_after_seconds(response),
        permanent=response.status_code in (400, 401, 403, 404, 422),
    )


@pytest.fixture(autouse=True)
def _clean(runtime: Runtime) -> Iterator[None]:
    """Jobs of the test kinds must not leak into other tests' workers."""
    yield
    with transaction(runtime.sessions) as db:
        db.execute(delete(OutboxMessage).where(OutboxMessage.destination_kind.like("test-%")))
        db.execute(delete(InboundEvent).where(InboundEvent.kind.like("test-%")))


@pytest.fixture(autouse=True)
def _quiet_queue(runtime: Runtime) -> None:
    """Jobs other tests left due are run first, by the full registry, so the
    workers below (with only their test's jobs) count only their test's own."""
    runtime.make_worker().drain()


def _worker(
    runtime: Runtime,
    registry: Registry,
    clock: Clock,
    *,
    max_attempts: int = 5,
    worker_id: str | None = None,
) -> Worker:
    return Worker(
        session_factory=runtime.sessions,
        cipher=runtime.cipher,
        registry=registry,
        max_attempts=max_attempts,
        lease_seconds=30,
        poll_seconds=0.05,
        clock=clock,
        worker_id=worker_id,
    )


def _enqueue(runtime: Runtime, url: str, clock: Clock, key: str = "k1") -> str:
    with transaction(runtime.sessions) as db:
        sync.enqueue(
            db,
            runtime.cipher,
            destination_kind=KIND,
            destination_id=url,
            topic="test.event",
            payload={"hello": "world"},
            idempotency_key=key,
            program_id=None,
            now=clock.now,
        )
        return db.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.destination_kind == KIND,
                OutboxMessage.destination_id == url,
                OutboxMessage.idempotency_key == key,
            )
        ).one()


def _message(runtime: Runtime, message_id: str) -> OutboxMessage:
    with runtime.sessions() as db:
        return db.get_one(OutboxMessage, message_id)


def test_429_waits_as_long_as_retry_after_says_then_delivers(runtime: Runtime) -> None:
    clock = Clock()
    peer = ScriptedServer([Reply(429, {"Retry-After": "7"})], then=Reply(200))
    worker = _worker(runtime, Registry(remote={KIND: http_deliverer}), clock)
    with peer.running():
        message_id = _enqueue(runtime, peer.url, clock)

        assert worker.run_once() == 1
        waiting = _message(runtime, message_id)
        assert (waiting.state, waiting.attempts, waiting.last_error) == ("retry", 1, "HTTP 429")
        assert waiting.next_attempt_at - clock.now == timedelta(seconds=7)

        clock.advance(6)
        assert worker.run_once() == 0  # not due yet: nothing is sent early
        clock.advance(1.5)
        assert worker.run_once() == 1

    delivered = _message(runtime, message_id)
    assert (delivered.state, delivered.attempts, delivered.last_error) == ("delivered", 2, None)
    assert len(peer.received) == 2
    assert {r.headers["idempotency-key"] for r in peer.received} == {message_id}
    assert peer.received[1].json() == {"hello": "world"}


def test_failures_back_off_exponentially_then_dead_letter_then_replay_delivers(
    runtime: Runtime,
) -> None:
    clock = Clock()
    peer = ScriptedServer([Reply(500), Reply(503), Reply(500)], then=Reply(204, body=b""))
    worker = _worker(runtime, Registry(remote={KIND: http_deliverer}), clock, max_attempts=3)
    with peer.running():
        message_id = _enqueue(runtime, peer.url, clock)
        delays = []
        for _ in range(3):
            worker.run_once()
            message = _message(runtime, message_id)
            delays.append((message.next_attempt_at - clock.now).total_seconds())
            clock.advance(3600)

        dead = _message(runtime, message_id)
        assert (dead.state, dead.attempts, dead.last_error) == ("dead", 3, "HTTP 500")
        # Equal jitter: attempt n waits between half and all of 2 s * 2^(n-1).
        assert 1.0 <= delays[0] <= 2.0
        assert 2.0 <= delays[1] <= 4.0
        assert worker.run_once() == 0  # dead stays dead

        with transaction(runtime.sessions) as db:
            sync.replay(db, OutboxMessage, message_id, program_id=None, now=clock.now)
        assert worker.run_once() == 1

    replayed = _message(runtime, message_id)
    assert (replayed.state, replayed.attempts) == ("delivered", 1)
    assert len(peer.received) == 4


def test_a_permanent_error_dead_letters_without_retrying(runtime: Runtime) -> None:
    clock = Clock()
    peer = ScriptedServer([], then=Reply(422, body=b'{"error": "bad field"}'))
    worker = _worker(runtime, Registry(remote={KIND: http_deliverer}), clock)
    with peer.running():
        message_id = _enqueue(runtime, peer.url, clock)
        worker.run_once()

    message = _message(runtime, message_id)
    assert (message.state, message.attempts, message.last_error) == ("dead", 1, "HTTP 422")
    assert len(peer.received) == 1


def test_an_unreachable_peer_is_retried(runtime: Runtime) -> None:
    clock = Clock()
    worker = _worker(runtime, Registry(remote={KIND: http_deliverer}), clock)
    message_id = _enqueue(runtime, "http://127.0.0.1:9", clock)  # nothing listens on port 9

    worker.run_once()

    message = _message(runtime, message_id)
    assert (message.state, message.attempts) == ("retry", 1)
    assert (message.last_error or "").startswith("ConnectError")


def test_enqueue_is_idempotent_per_destination_and_key(runtime: Runtime) -> None:
    clock = Clock()
    first = _enqueue(runtime, "http://a.example", clock, key="same")
    second = _enqueue(runtime, "http://a.example", clock, key="same")
    other = _enqueue(runtime, "http://b.example", clock, key="same")

    assert first == second
    assert other != first


def test_fanout_copies_each_event_once_per_subscriber(runtime: Runtime) -> None:
    clock = Clock()

    def subscribers(session: Session, program_id: str, topic: str) -> list[Destination]:
        return [Destination(KIND, "http://one.example"), Destination(KIND, "http://two.example")]

    registry = Registry(local={sync.FANOUT_KIND: make_fanout(runtime.cipher, [subscribers])})
    with transaction(runtime.sessions) as db:
        sync.publish(
            db,
            runtime.cipher,
            program_id="prg_test",
            topic="test.happened",
            data={"n": 1},
            key="e1",
            now=clock.now,
        )
        event_id = db.scalars(
            select(OutboxMessage.id).where(OutboxMessage.idempotency_key == "test.happened:e1")
        ).one()

    _worker(runtime, registry, clock).run_once()
    # Running the fan-out again (a replay, a crash after commit) queues nothing new.
    with transaction(runtime.sessions) as db:
        db.get_one(OutboxMessage, event_id).state = "pending"
    _worker(runtime, registry, clock).run_once()

    with runtime.sessions() as db:
        copies = list(
            db.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key == event_id))
        )
        assert sorted(c.destination_id for c in copies) == [
            "http://one.example",
            "http://two.example",
        ]
        assert {c.topic for c in copies} == {"test.happened"}
        db.execute(delete(OutboxMessage).where(OutboxMessage.id == event_id))
        db.commit()


def _receive(runtime: Runtime, kind: str, external_id: str, clock: Clock) -> str:
    with transaction(runtime.sessions) as db:
        return sync.receive(
            db,
            runtime.cipher,
            kind=kind,
            source=f"{kind}:src",
            external_id=external_id,
            topic="t",
            payload=b'{"x": 1}',
            program_id=None,
            now=clock.now,
        ).event.id


def test_failing_inbound_job_is_retried_and_its_partial_work_rolled_back(runtime: Runtime) -> None:
    clock = Clock()
    calls: list[str] = []

    def flaky(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        calls.append(payload)
        session.add(
            OutboxMessage(
                id=f"msg_PARTIAL{len(calls):021d}",
                destination_kind="test-partial",
                destination_id="x",
                topic="t",
                idempotency_key=f"partial-{len(calls)}",
                payload_enc="x",
                state="delivered",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        session.flush()
        if len(calls) == 1:
            raise RuntimeError("remote glitch")

    worker = _worker(runtime, Registry(inbound={"test-flaky": flaky}), clock)
    event_id = _receive(runtime, "test-flaky", "e-1", clock)

    worker.run_once()
    with runtime.sessions() as db:
        event = db.get_one(InboundEvent, event_id)
        assert (event.state, event.attempts) == ("retry", 1)
        assert (event.last_error or "").startswith("RuntimeError: remote glitch")
        assert (
            list(
                db.scalars(
                    select(OutboxMessage.idempotency_key).where(
                        OutboxMessage.destination_kind == "test-partial"
                    )
                )
            )
            == []
        )

    clock.advance(60)
    worker.run_once()

    with runtime.sessions() as db:
        event = db.get_one(InboundEvent, event_id)
        assert (event.state, event.attempts, event.last_error) == ("processed", 2, None)
        assert event.handled_at == clock.now
        assert list(
            db.scalars(
                select(OutboxMessage.idempotency_key).where(
                    OutboxMessage.destination_kind == "test-partial"
                )
            )
        ) == ["partial-2"]
    assert calls == ['{"x": 1}', '{"x": 1}']


def test_duplicate_inbound_event_is_stored_once(runtime: Runtime) -> None:
    clock = Clock()
    first = _receive(runtime, "test-dup", "same-id", clock)
    second = _receive(runtime, "test-dup", "same-id", clock)

    assert first == second


def test_two_workers_never_run_the_same_job_twice(runtime: Runtime) -> None:
    clock = Clock()
    seen: list[str] = []
    lock = threading.Lock()

    def count(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        with lock:
            seen.append(event.id)

    ids = [_receive(runtime, "test-count", f"e-{n}", clock) for n in range(60)]
    registry = Registry(inbound={"test-count": count})
    workers = [_worker(runtime, registry, clock, worker_id=f"w{n}") for n in range(3)]
    for worker in workers:
        worker._batch = 5  # small batches so the workers interleave
    threads = [threading.Thread(target=w.drain) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(seen) == sorted(ids)
    with runtime.sessions() as db:
        states = set(db.scalars(select(InboundEvent.state).where(InboundEvent.id.in_(ids))))
    assert states == {"processed"}


def test_a_worker_that_lost_its_lease_cannot_commit(runtime: Runtime, backend: Backend) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite's single writer cannot interleave two workers inside one job")
    clock = Clock()
    event_id = _receive(runtime, "test-slow", "slow-1", clock)
    taken_over = threading.Event()

    def slow(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        session.add(
            OutboxMessage(
                id=f"msg_STALE{event.attempts:023d}",
                destination_kind="test-stale",
                destination_id="x",
                topic="t",
                idempotency_key=f"stale-{event.attempts}",
                payload_enc="x",
                state="delivered",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        session.flush()
        if event.attempts == 1:  # the first worker: let its lease run out and another take over
            clock.advance(31)
            other = _worker(
                runtime, Registry(inbound={"test-slow": slow}), clock, worker_id="second"
            )
            assert other.run_once() == 1
            taken_over.set()

    first = _worker(runtime, Registry(inbound={"test-slow": slow}), clock, worker_id="first")
    first.run_once()

    assert taken_over.is_set()
    with runtime.sessions() as db:
        event = db.get_one(InboundEvent, event_id)
        assert (event.state, event.attempts) == ("processed", 2)
        kept = list(
            db.scalars(
                select(OutboxMessage.idempotency_key).where(
                    OutboxMessage.destination_kind == "test-stale"
                )
            )
        )
    assert kept == ["stale-2"]


def test_a_batch_records_each_outcome_and_skips_only_a_message_whose_lease_was_lost(
    runtime: Runtime,
) -> None:
    clock = Clock()
    ids = [_enqueue(runtime, "batch-destination", clock, key=f"b{n}") for n in range(3)]

    def deliver_all(batch: Sequence[tuple[OutboxMessage, dict[str, Any]]]) -> list[Outcome]:
        # Meanwhile another worker took over the second message (its lease ran out).
        with transaction(runtime.sessions) as db:
            db.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == ids[1])
                .values(locked_by="another-worker")
            )
        return [Outcome(ok=True), Outcome(ok=True), Outcome(ok=False, error="HTTP 503")]

    worker = _worker(runtime, Registry(batched={KIND: Batched(deliver_all, size=10)}), clock)
    assert worker.run_once() == 3

    first, second, third = (_message(runtime, i) for i in ids)
    assert (first.state, first.attempts) == ("delivered", 1)
    # Not ours any more: left to the worker that holds it, untouched by this one.
    assert (second.state, second.locked_by, second.last_error) == (
        "pending",
        "another-worker",
        None,
    )
    assert (third.state, third.attempts, third.last_error) == ("retry", 1, "HTTP 503")


def test_a_pass_of_remote_messages_sends_none_whose_lease_was_taken_over(runtime: Runtime) -> None:
    # The messages of a pass are read once at its start; one whose lease has
    # less than half left when its turn comes is read again before sending.
    clock = Clock()
    ids = [_enqueue(runtime, "slow-then-taken", clock, key=f"s{n}") for n in range(3)]
    sent: list[str] = []

    def slow(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        sent.append(message.id)
        if len(sent) == 1:
            clock.advance(20)  # a slow receiver: 10 of the 30 s lease left after it
            with transaction(runtime.sessions) as db:  # meanwhile another worker took over
                db.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == ids[1])
                    .values(locked_by="another-worker")
                )
        return Outcome(ok=True)

    worker = _worker(runtime, Registry(remote={KIND: slow}), clock)
    assert worker.run_once() == 3

    first, second, third = (_message(runtime, i) for i in ids)
    assert sent == [ids[0], ids[2]]
    assert (first.state, third.state) == ("delivered", "delivered")
    assert (second.state, second.locked_by, second.last_error) == (
        "pending",
        "another-worker",
        None,
    )


def test_outcomes_recorded_together_skip_only_a_message_taken_over_meanwhile(
    runtime: Runtime,
) -> None:
    clock = Clock()
    ids = [_enqueue(runtime, "taken-before-record", clock, key=f"r{n}") for n in range(3)]
    sent: list[str] = []

    def deliver(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        sent.append(message.id)
        if len(sent) == 3:
            # The first was sent, its outcome not recorded yet: another worker takes it.
            with transaction(runtime.sessions) as db:
                db.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == ids[0])
                    .values(locked_by="another-worker")
                )
            return Outcome(ok=False, error="HTTP 503")
        return Outcome(ok=True)

    worker = _worker(runtime, Registry(remote={KIND: deliver}), clock)
    assert worker.run_once() == 3

    first, second, third = (_message(runtime, i) for i in ids)
    assert sent == ids
    assert (first.state, first.locked_by, first.delivered_at) == ("pending", "another-worker", None)
    assert (second.state, second.locked_by, second.attempts) == ("delivered", None, 1)
    assert (third.state, third.locked_by, third.last_error) == ("retry", None, "HTTP 503")
    with runtime.sessions() as db:
        attempts = [
            [(a.outcome, a.attempt) for a in sync.list_attempts(db, message_id)]
            for message_id in ids
        ]
    assert attempts == [[], [("delivered", 1)], [("retry", 1)]]
