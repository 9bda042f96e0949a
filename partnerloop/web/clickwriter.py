"""Group commit for clicks: every redirect waits until its click is on disk,
but many redirects share one commit.

While one batch commits (in a thread, the database driver is synchronous), the
clicks that arrive queue up and go into the next batch together. At low
traffic a click waits for one small commit; at high traffic a commit carries
hundreds of clicks, which is how the redirect stays fast without acknowledging
a click that is not stored.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import anyio.to_thread

from partnerloop.core.db import transaction
from partnerloop.runtime import Runtime
from partnerloop.tracking import service as tracking
from partnerloop.tracking.service import ClickRecord
from partnerloop.web import metrics

log = logging.getLogger("partnerloop.clicks")


class ClickWriter:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._max = runtime.settings.click_batch_max
        self._queue: asyncio.Queue[tuple[ClickRecord, asyncio.Future[bool]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # A thread of its own: behind anyio's shared default pool (which FastAPI's
        # sync endpoints use too) a burst of slow API calls would stall every redirect.
        self._limiter = anyio.CapacityLimiter(1)

    async def record(self, click: ClickRecord) -> bool:
        """Queue a click and wait for its commit. False if the commit failed."""
        if self._task is None or self._task.done():
            self._fail_leftovers()
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._queue is not None
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((click, done))
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
        """Clicks queued to a writer task that died are answered 'not recorded'
        (their shoppers are still redirected) instead of waiting forever."""
        while self._queue is not None and not self._queue.empty():
            _, done = self._queue.get_nowait()
            if not done.done():
                done.set_result(False)

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max and not queue.empty():
                batch.append(queue.get_nowait())
            ok = await self._commit([click for click, _ in batch])
            for _, done in batch:
                if not done.done():
                    done.set_result(ok)
                queue.task_done()

    async def _commit(self, clicks: list[ClickRecord]) -> bool:
        started = time.perf_counter()
        try:
            await anyio.to_thread.run_sync(self._write, clicks, limiter=self._limiter)
        except Exception:
            metrics.CLICK_WRITE_FAILURES.inc()
            log.exception("could not commit %d clicks", len(clicks))
            return False
        metrics.CLICK_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.CLICK_BATCH_SIZE.observe(len(clicks))
        metrics.CLICKS_WRITTEN.inc(len(clicks))
        return True

    def _write(self, clicks: list[ClickRecord]) -> None:
        with transaction(self._runtime.sessions) as session:
            tracking.write_clicks(session, self._runtime.cipher, clicks)
