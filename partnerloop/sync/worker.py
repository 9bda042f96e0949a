"""The worker: claims inbox and outbox jobs, runs them, records the outcome.

Exactly-once effects for jobs that change our own database: the handler's
writes and the job's "done" mark commit in one transaction, and the mark only
succeeds while this worker still holds the lease. If the worker dies before
the commit, nothing of the job remains, the lease runs out, and another
worker (or this one restarted) runs it again.

Calls to remote systems cannot share our transaction: they are delivered at
least once, carrying the message id as idempotency key, and marked delivered
only after the remote side accepted them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.faults import NO_FAULTS, Faults
from partnerloop.sync import service
from partnerloop.sync.models import InboundEvent, OutboxMessage
from partnerloop.sync.pacing import NO_PACING, Pacer

log = logging.getLogger("partnerloop.worker")


class RejectEvent(Exception):
    """Raised by a handler for data that will never be processable as it is
    (a validation failure): the event is kept as `rejected` with this reason
    instead of being retried."""


class InboundHandler(Protocol):
    def __call__(
        self, session: Session, event: InboundEvent, payload: str, now: datetime
    ) -> None: ...


class LocalHandler(Protocol):
    """An outbox job whose effect is in our own database (e.g. the event fan-out)."""

    def __call__(
        self, session: Session, message: OutboxMessage, payload: dict[str, Any], now: datetime
    ) -> None: ...


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    retry_after: float | None = None  # seconds, from the remote side (429 Retry-After)
    permanent: bool = False  # retrying cannot help (e.g. 400 on our payload): dead-letter now
    # For the attempt log: the remote answer, if there was one.
    status_code: int | None = None
    response: str | None = None
    # Not tried at all (the connector is paused or its rate budget is spent): wait
    # retry_after seconds without using up one of the message's attempts.
    deferred: bool = False


T = TypeVar("T")

# What jobs read once per pass over claimed messages (see per_pass).
_PASS: ContextVar[dict[Hashable, Any] | None] = ContextVar("partnerloop_worker_pass", default=None)


@contextmanager
def one_pass() -> Iterator[None]:
    """The scope of `per_pass`: one pass of the worker over the jobs it claimed
    together: the inbound events; the outbox's local messages (the fan-out); its
    remote ones."""
    token = _PASS.set({})
    try:
        yield
    finally:
        _PASS.reset(token)


def per_pass(key: Hashable, load: Callable[[], T]) -> T:
    """`load()`, read once per pass of the worker over its claimed messages (e.g.
    the destination connector: one read per message was the second most frequent
    statement of a pass). A value is kept for that pass only, so a change made in
    between (a connector's new secret) is seen by the next pass; a deliverer that
    changes what it loaded calls `forget_for_pass`. Plain data only (a pass spans
    several sessions). Outside a pass, loaded each time."""
    memo = _PASS.get()
    if memo is None:
        return load()
    if key not in memo:
        memo[key] = load()
    return memo[key]  # type: ignore[no-any-return]


def forget_for_pass(key: Hashable) -> None:
    memo = _PASS.get()
    if memo is not None:
        memo.pop(key, None)


class RemoteDeliverer(Protocol):
    """Delivers an outbox message to a remote system; runs outside any transaction."""

    def __call__(self, message: OutboxMessage, payload: dict[str, Any]) -> Outcome: ...


class BatchDeliverer(Protocol):
    """Delivers several messages for one destination in one go (a CRM's batch API);
    returns one outcome per message, in the order given. Runs outside any transaction."""

    def __call__(self, batch: Sequence[tuple[OutboxMessage, dict[str, Any]]]) -> list[Outcome]: ...


@dataclass(frozen=True)
class Batched:
    deliver: BatchDeliverer
    size: int  # at most this many messages per call (the vendor's batch limit)


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    every_seconds: float
    run: Callable[[Session, datetime], int]


@dataclass(frozen=True)
class BackgroundTask:
    """Periodic work that calls remote systems (e.g. pulling a shop's orders): it
    runs outside any transaction and opens its own short ones, so no database
    lock is held while waiting on the network."""

    name: str
    every_seconds: float
    run: Callable[[datetime], int]


@dataclass
class Registry:
    """What the worker can do, keyed by InboundEvent.kind and OutboxMessage.destination_kind.

    Assembled in one place (partnerloop.runtime) so the set of jobs is visible
    in one file; a job kind with no entry here is reported, never dropped.
    """

    inbound: Mapping[str, InboundHandler] = field(default_factory=dict)
    local: Mapping[str, LocalHandler] = field(default_factory=dict)
    remote: Mapping[str, RemoteDeliverer] = field(default_factory=dict)
    # Destination kinds whose due messages go out together, per destination.
    batched: Mapping[str, Batched] = field(default_factory=dict)
    periodic: Sequence[PeriodicTask] = ()
    background: Sequence[BackgroundTask] = ()


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        cipher: FieldCipher,
        registry: Registry,
        max_attempts: int,
        lease_seconds: float,
        poll_seconds: float,
        faults: Faults = NO_FAULTS,
        worker_id: str | None = None,
        batch_size: int = 50,
        together: int = 25,
        outcomes_together: int = 25,
        clock: Callable[[], datetime] = utcnow,
        pacer: Pacer = NO_PACING,
    ) -> None:
        self._sessions = session_factory
        self._cipher = cipher
        self._registry = registry
        self._max_attempts = max_attempts
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._faults = faults
        self.worker_id = worker_id or default_worker_id()
        self._batch = batch_size
        # Local jobs per transaction at most: bounds how long one transaction holds
        # SQLite's write lock (the webhooks' and clicks' commits wait behind it).
        self._together = max(together, 1)
        # Outcomes of remote messages per transaction at most (they only mark the
        # messages and log the attempts): apart from `together`, which bounds local
        # jobs, so running those one at a time does not cost a commit per delivery.
        self._outcomes_together = max(outcomes_together, 1)
        self._clock = clock
        self._pacer = pacer
        self._wake = threading.Event()
        self._last_periodic: dict[str, float] = {}

    # --- loop -----------------------------------------------------------------------------

    def wake(self) -> None:
        """Poke an idle worker: new work was just committed."""
        self._wake.set()

    def run_forever(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            try:
                did = self.run_once()
            except Exception:  # the loop must survive a database hiccup
                log.exception("worker iteration failed")
                did = 0
            if did == 0:
                self._wake.wait(self._poll)
                self._wake.clear()
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> int:
        """One pass over everything due. Returns how many jobs it ran."""
        done = self._run_periodic()
        inbound = self._claim(InboundEvent)
        with one_pass():
            self._run_together(InboundEvent, inbound, self._inbound_body)
        claimed = self._claim(OutboxMessage)
        local, singles, batches = self._group(claimed)
        with one_pass():
            self._run_together(OutboxMessage, local, self._local_body)
        self._run_singles(singles)
        for kind, message_ids in batches:
            self._run_batch(kind, message_ids)
        return done + len(inbound) + len(claimed)

    def _group(
        self, message_ids: list[str]
    ) -> tuple[list[str], list[str], list[tuple[str, list[str]]]]:
        """Claimed messages -> local jobs (run together in one transaction), remote
        ones delivered one by one, and batches: per destination of a batched kind,
        in due order, at most its batch size each."""
        if not message_ids:
            return [], [], []
        with self._sessions() as session:
            where = {
                row.id: (row.destination_kind, row.destination_id)
                for row in session.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.destination_kind,
                        OutboxMessage.destination_id,
                    ).where(OutboxMessage.id.in_(message_ids))
                )
            }
        local: list[str] = []
        singles: list[str] = []
        grouped: dict[tuple[str, str], list[str]] = {}
        for message_id in message_ids:
            kind, destination = where.get(message_id, ("", ""))
            if kind in self._registry.local:
                local.append(message_id)
            elif kind in self._registry.batched:
                grouped.setdefault((kind, destination), []).append(message_id)
            else:
                singles.append(message_id)
        batches: list[tuple[str, list[str]]] = []
        for (kind, _), ids in grouped.items():
            size = max(self._registry.batched[kind].size, 1)
            batches.extend((kind, ids[i : i + size]) for i in range(0, len(ids), size))
        return local, singles, batches

    def _claim(self, model: type[service.Job]) -> list[str]:
        now = self._clock()
        # A read first: an idle worker polling every second must not take SQLite's
        # write lock each time (the clicks' and webhooks' commits would wait on it).
        with self._sessions() as session:
            if not service.any_due(session, model, now=now):
                return []
        with transaction(self._sessions) as session:
            service.dead_letter_exhausted(
                session, model, max_attempts=self._max_attempts, now=self._clock()
            )
            return service.claim(
                session,
                model,
                worker_id=self.worker_id,
                limit=self._batch,
                lease_seconds=self._lease,
                now=self._clock(),
            )

    def drain(self, *, max_rounds: int = 100) -> int:
        """Run until nothing is due (tests, CLI one-shots). Returns jobs run."""
        total = 0
        for _ in range(max_rounds):
            ran = self.run_once()
            total += ran
            if ran == 0:
                break
        return total

    # --- jobs -----------------------------------------------------------------------------

    def _inbound_body(self, session: Session, event: InboundEvent, now: datetime) -> None:
        handler = self._registry.inbound.get(event.kind)
        if handler is None:
            raise LookupError(f"no handler for inbound events of kind {event.kind!r}")
        handler(session, event, service.read_payload(self._cipher, event), now)

    def _local_body(self, session: Session, message: OutboxMessage, now: datetime) -> None:
        payload = json.loads(service.read_payload(self._cipher, message))
        self._registry.local[message.destination_kind](session, message, payload, now)

    def _run_together(
        self,
        model: type[service.Job],
        job_ids: list[str],
        body: Callable[[Session, Any, datetime], None],
    ) -> None:
        """Jobs whose effects are in our own database, several to a transaction:
        each job's writes and its "done" mark in a savepoint of its own, one commit
        for the group. A commit costs an fsync; one per job capped a worker at a few
        hundred jobs a second whatever the jobs cost.

        Exactly once still holds: a job's effects and its mark commit together or
        not at all. A job that fails in the group (an error, a rejection, a lost
        lease, a deadlock with another worker) is rolled back to its savepoint and
        run again alone afterwards, through the one-job path that records failures
        and rejections; so is every job of a group whose commit failed.
        """
        alone: list[str] = []
        for start in range(0, len(job_ids), self._together):
            group = job_ids[start : start + self._together]
            if len(group) == 1:
                alone.extend(group)
                continue
            failed: list[str] = []
            try:
                with transaction(self._sessions) as session:
                    for job_id in group:
                        try:
                            with session.begin_nested():
                                job = service.load_claimed(
                                    session, model, job_id, worker_id=self.worker_id
                                )
                                if job is None:
                                    continue
                                now = self._clock()
                                body(session, job, now)
                                service.mark_done(
                                    session, model, job_id, worker_id=self.worker_id, now=now
                                )
                        except Exception:  # settled alone below, where it is recorded
                            failed.append(job_id)
                    self._faults.checkpoint("job.before_commit")
                self._faults.checkpoint("job.after_commit")
            except Exception as error:
                log.warning("a group of %d jobs failed to commit: %s", len(group), _describe(error))
                failed = group
            alone.extend(failed)
        for job_id in alone:
            self._run_in_transaction(model, job_id, body)

    def _run_singles(self, message_ids: list[str]) -> None:
        """Remote messages, one call each; their outcomes are recorded several to a
        transaction (a commit each was most of a fast receiver's cost). Recorded at
        the latest a second after the call, well inside the lease, so a slow
        receiver cannot make a delivered message look abandoned."""
        claimed = self._load_claimed(message_ids)
        pending: list[_Sent] = []
        flushed = time.monotonic()
        with one_pass():
            for message_id in message_ids:
                message = claimed.get(message_id)
                if message is None:  # no longer ours (its lease was taken over)
                    continue
                started = time.monotonic()
                delivered = self._deliver(message)
                self._pacer.after_job(time.monotonic() - started)
                if delivered is not None:
                    pending.append(delivered)
                if len(pending) >= self._outcomes_together or time.monotonic() - flushed > 1.0:
                    self._record_outcomes(pending)
                    pending, flushed = [], time.monotonic()
        self._record_outcomes(pending)

    def _load_claimed(self, message_ids: list[str]) -> dict[str, OutboxMessage]:
        """The messages among these that this worker holds, in one read (one each
        was the most frequent statement of a pass), detached from the session."""
        if not message_ids:
            return {}
        with self._sessions() as session:
            found = {
                message.id: message
                for message in session.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.id.in_(message_ids),
                        OutboxMessage.locked_by == self.worker_id,
                    )
                )
            }
            session.expunge_all()
        return found

    def _still_held(self, message: OutboxMessage) -> OutboxMessage | None:
        """The message, if this worker may still send it. Read with the pass, it
        stands while at least half of its lease is left: no other worker claims it
        before the lease runs out. Closer to the end (slow receivers before it in
        the pass) it is read again, as before each send, to see a takeover."""
        left = (
            message.locked_until - self._clock()
            if message.locked_until is not None
            else timedelta(0)
        )
        if left > timedelta(seconds=self._lease / 2):
            return message
        with self._sessions() as session:
            fresh = service.load_claimed(
                session, OutboxMessage, message.id, worker_id=self.worker_id
            )
            session.expunge_all()
        return fresh

    def _deliver(self, claimed: OutboxMessage) -> _Sent | None:
        """One call; None if the message is no longer ours (its lease was taken over)."""
        started = self._clock()
        clock = time.monotonic()
        message = self._still_held(claimed)
        if message is None:
            return None
        payload = json.loads(service.read_payload(self._cipher, message))
        deliverer = self._registry.remote.get(message.destination_kind)
        if deliverer is None:
            outcome = Outcome(
                ok=False, error=f"no deliverer for destination kind {message.destination_kind!r}"
            )
        else:
            self._faults.checkpoint("delivery.before_send")
            try:
                outcome = deliverer(message, payload)
            except Exception as error:  # a deliverer bug must not lose the message
                outcome = Outcome(ok=False, error=_describe(error))
            self._faults.checkpoint("delivery.after_send")
        attempt = service.AttemptFacts(
            started_at=started,
            duration_ms=int((time.monotonic() - clock) * 1000),
            status_code=outcome.status_code,
            error=outcome.error,
            response=outcome.response,
        )
        return _Sent(message, outcome, attempt)

    def _record_outcomes(self, done: list[_Sent]) -> None:
        if not done:
            return
        # The delivered ones marked in one statement; a message it left out, or
        # whose failure's mark matched no row, was taken over by another worker and
        # is skipped alone. No savepoint per outcome: a lost lease is found by the
        # outcome's first write matching no row, so it leaves nothing to roll back.
        # No autoflush: the attempt rows go in together at the commit.
        with transaction(self._sessions) as session, session.no_autoflush:
            delivered = service.mark_delivered(
                session,
                [sent.message.id for sent in done if sent.outcome.ok],
                worker_id=self.worker_id,
                now=self._clock(),
            )
            for sent in done:
                try:
                    if not sent.outcome.ok:
                        self._record_failure(session, sent.message, sent.outcome, sent.attempt)
                    elif sent.message.id in delivered:
                        service.record_attempt(
                            session,
                            self._cipher,
                            sent.message.id,
                            sent.attempt,
                            outcome="delivered",
                            message=sent.message,
                        )
                    else:
                        raise service.LostLease(sent.message.id)
                except service.LostLease:
                    log.warning(
                        "outbox %s: lease lost before the outcome was recorded", sent.message.id
                    )

    def _run_batch(self, kind: str, message_ids: list[str]) -> None:
        """One call for several messages; each still gets its own outcome and attempt
        row. A crash after the send leaves all of them claimed: they are sent again
        together once the lease runs out (the vendor's upsert makes that harmless)."""
        claimed = self._load_claimed(message_ids)
        batch: list[tuple[OutboxMessage, dict[str, Any]]] = [
            (message, json.loads(service.read_payload(self._cipher, message)))
            for message in (claimed.get(message_id) for message_id in message_ids)
            if message is not None
        ]
        if not batch:
            return
        started = self._clock()
        clock = time.monotonic()
        self._faults.checkpoint("delivery.before_send")
        try:
            outcomes = self._registry.batched[kind].deliver(batch)
            if len(outcomes) != len(batch):
                raise ValueError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except Exception as error:  # a deliverer bug must not lose the messages
            outcomes = [Outcome(ok=False, error=_describe(error))] * len(batch)
        self._faults.checkpoint("delivery.after_send")
        duration_ms = int((time.monotonic() - clock) * 1000)
        self._record_outcomes(
            [
                _Sent(
                    message,
                    outcome,
                    service.AttemptFacts(
                        started_at=started,
                        duration_ms=duration_ms,
                        status_code=outcome.status_code,
                        error=outcome.error,
                        response=outcome.response,
                    ),
                )
                for (message, _), outcome in zip(batch, outcomes, strict=True)
            ]
        )

    def _record_failure(
        self,
        session: Session,
        message: OutboxMessage,
        outcome: Outcome,
        attempt: service.AttemptFacts,
    ) -> None:
        job_id = message.id
        now = self._clock()
        if outcome.deferred:
            wait = service.retry_delay(outcome.retry_after or 1.0, default=1.0)
            service.defer(
                session,
                job_id,
                worker_id=self.worker_id,
                until=now + timedelta(seconds=wait),
                reason=outcome.error or "deferred",
            )
            return
        state = service.mark_failed(
            session,
            OutboxMessage,
            job_id,
            worker_id=self.worker_id,
            error=outcome.error or "delivery failed",
            max_attempts=1 if outcome.permanent else self._max_attempts,
            now=now,
            retry_after=outcome.retry_after,
        )
        service.record_attempt(
            session, self._cipher, job_id, attempt, outcome=state, message=message
        )
        log.warning("outbox %s not delivered (%s): %s", job_id, state, outcome.error)

    def _run_in_transaction(
        self,
        model: type[service.Job],
        job_id: str,
        body: Callable[[Session, Any, datetime], None],
    ) -> None:
        started = time.monotonic()
        try:
            self._run_job(model, job_id, body)
        finally:
            self._pacer.after_job(time.monotonic() - started)

    def _run_job(
        self,
        model: type[service.Job],
        job_id: str,
        body: Callable[[Session, Any, datetime], None],
    ) -> None:
        try:
            with transaction(self._sessions) as session:
                job = service.load_claimed(session, model, job_id, worker_id=self.worker_id)
                if job is None:
                    return
                now = self._clock()
                body(session, job, now)
                service.mark_done(session, model, job_id, worker_id=self.worker_id, now=now)
                self._faults.checkpoint("job.before_commit")
            self._faults.checkpoint("job.after_commit")
        except service.LostLease:
            log.warning("job %s: lease lost, its work was rolled back", job_id)
        except RejectEvent as reason:
            self._settle(model, job_id, rejected=str(reason))
        except Exception as error:
            log.warning("job %s failed: %s", job_id, _describe(error))
            self._settle(model, job_id, error=_describe(error), trace=traceback.format_exc())

    def _settle(
        self,
        model: type[service.Job],
        job_id: str,
        *,
        rejected: str | None = None,
        error: str | None = None,
        trace: str | None = None,
    ) -> None:
        try:
            with transaction(self._sessions) as session:
                if rejected is not None:
                    service.mark_rejected(
                        session,
                        job_id,
                        worker_id=self.worker_id,
                        reason=rejected,
                        now=self._clock(),
                    )
                    return
                service.mark_failed(
                    session,
                    model,
                    job_id,
                    worker_id=self.worker_id,
                    error=f"{error}\n{trace or ''}".strip(),
                    max_attempts=self._max_attempts,
                    now=self._clock(),
                )
        except service.LostLease:
            log.warning("job %s: lease lost before its failure was recorded", job_id)

    def _run_periodic(self) -> int:
        ran = 0
        for task in self._registry.periodic:
            last = self._last_periodic.get(task.name, 0.0)
            if time.monotonic() - last < task.every_seconds:
                continue
            self._last_periodic[task.name] = time.monotonic()
            try:
                with transaction(self._sessions) as session:
                    ran += task.run(session, self._clock())
            except Exception:
                log.exception("periodic task %s failed", task.name)
        for background in self._registry.background:
            last = self._last_periodic.get(background.name, 0.0)
            if time.monotonic() - last < background.every_seconds:
                continue
            self._last_periodic[background.name] = time.monotonic()
            try:
                ran += background.run(self._clock())
            except Exception:
                log.exception("background task %s failed", background.name)
        return ran


@dataclass(frozen=True)
class _Sent:
    """A remote message tried, its outcome waiting to be recorded."""

    message: OutboxMessage  # detached, as loaded while this worker held it
    outcome: Outcome
    attempt: service.AttemptFacts


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
