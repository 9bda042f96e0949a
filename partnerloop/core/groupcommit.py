"""Group commit: many callers' writes share one transaction, and each caller is
answered only after the commit that holds its write.

A commit costs an fsync (SQLite `synchronous=FULL`, PostgreSQL's WAL flush), a
few milliseconds on ordinary disks; one commit per request caps a server at a
few hundred writes a second however fast the rest is. While one batch commits
(in a thread of its own: the database drivers are synchronous), the writes that
arrive queue up and go into the next batch together, so at low traffic a write
waits for one small commit and at high traffic a commit carries hundreds.

`write(session, items)` returns one outcome per item, in order: a value for the
caller, or an exception instance the caller gets raised (a per-item refusal such
as a bad signature, which must not fail the others). If the batch's transaction
itself fails, every item is tried again in a transaction of its own, so one
poisonous item fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.db import transaction

log = logging.getLogger("partnerloop.groupcommit")

Item = TypeVar("Item")
Result = TypeVar("Result")

# One batch's write: an outcome per item, in order (a value, or an exception to raise).
Write = Callable[[Session, Sequence[Item]], Sequence["Result | BaseException"]]


@dataclass
class Stats:
    """Counters a caller may export (e.g. to Prometheus)."""

    commits: int = 0
    items: int = 0
    failed_batches: int = 0
    last_batch: int = 0


class GroupCommitter(Generic[Item, Result]):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        write: Write[Item, Result],
        *,
        max_batch: int = 500,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._write = write
        self._max = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # A thread of its own: behind anyio's shared pool (FastAPI's sync endpoints
        # use it too) a burst of slow API calls would stall every writer.
        self._limiter = anyio.CapacityLimiter(1)
        self.stats = Stats()

    async def submit(self, item: Item) -> Result:
        """Queue a write and wait until it is committed; returns its outcome or
        raises its exception."""
        if self._task is None or self._task.done():
            self._fail_leftovers()
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._queue is not None
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, done))
        return await done

    async def close(self) -> None:
        """Commit what is queued, then stop (on shutdown)."""
        if self._task is None:
            return
        assert self._queue is not None
        await self._queue.join()
        self._task.cancel()
        self._task = None

    def _fail_leftovers(self) -> None:
        # Writes queued to a task that died are refused instead of waiting forever.
        while self._queue is not None and not self._queue.empty():
            _, done = self._queue.get_nowait()
            if not done.done():
                done.set_exception(RuntimeError("the group committer stopped"))

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max and not queue.empty():
                batch.append(queue.get_nowait())
            items = [item for item, _ in batch]
            try:
                outcomes = await anyio.to_thread.run_sync(
                    self._commit, items, limiter=self._limiter
                )
            except BaseException as error:  # cancelled at shutdown, or a bug
                outcomes = [error] * len(batch)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if not done.done():
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
                queue.task_done()

    def _commit(self, items: list[Item]) -> list[Result | BaseException]:
        started = time.perf_counter()
        try:
            with transaction(self._sessions) as session:
                outcomes = list(self._write(session, items))
            if len(outcomes) != len(items):
                raise ValueError(f"{len(outcomes)} outcomes for {len(items)} items")
        except Exception:
            if len(items) == 1:
                raise
            # One item may be the cause: each alone, so only its caller fails.
            self.stats.failed_batches += 1
            log.exception("a batch of %d writes failed; retrying each alone", len(items))
            outcomes = []
            for item in items:
                try:
                    with transaction(self._sessions) as session:
                        outcomes.extend(self._write(session, [item]))
                except Exception as error:
                    outcomes.append(error)
        self.stats.commits += 1
        self.stats.items += len(items)
        self.stats.last_batch = len(items)
        if self._on_commit is not None:
            self._on_commit(len(items), time.perf_counter() - started)
        return outcomes
