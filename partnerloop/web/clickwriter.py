"""Group commit for clicks: every redirect waits until its click is on disk,
but many redirects share one commit.

A thread of its own owns the writes, on a database connection of its own.
While it commits one batch, the clicks that arrive queue up and go into the
next batch together: at low traffic a click waits for one small commit, at
high traffic a commit carries as many clicks as arrived meanwhile (up to
PARTNERLOOP_CLICK_BATCH_MAX). That is how the redirect stays fast without
acknowledging a click that is not stored.

Where the time goes decides the shape (benchmarks/RESULTS.md): a commit's
fsync is the floor of every click's wait, so the writer's turn is kept short.
Each click's row is prepared (IP encrypted, user agent classified) on the
event loop as it arrives, while the previous batch is on its way to disk; the
writer only inserts and commits, on a connection it keeps (no pool checkout,
reset and session set-up per batch), and hands a batch's answers back to the
loop in one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from partnerloop.core.checkpoint import WalCheckpointer
from partnerloop.core.db import WRITE_OPTION, write_lock
from partnerloop.runtime import Runtime
from partnerloop.tracking import service as tracking
from partnerloop.tracking.service import ClickRecord, ClickRow
from partnerloop.web import metrics

log = logging.getLogger("partnerloop.clicks")

_Pending = tuple[ClickRow, "asyncio.Future[bool]"]


class ClickWriter:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._max = runtime.settings.click_batch_max
        self._pending: deque[_Pending] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._wake_scheduled = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._connection: Connection | None = None
        self._session: Session | None = None
        self._checkpointer = (
            WalCheckpointer(runtime.engine) if runtime.engine.dialect.name == "sqlite" else None
        )

    async def record(self, click: ClickRecord) -> bool:
        """Queue a click and wait for its commit. False if the commit failed."""
        if self._thread is None or not self._thread.is_alive():
            self._start()
        row = tracking.click_row(click, self._runtime.cipher)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._pending.append((row, done))
        if self._idle and not self._wake_scheduled:
            # Wake the writer at the end of this turn of the loop, not now: the
            # clicks the loop is about to handle in the same turn (a batch's
            # shoppers all coming back at once) then share one commit instead of
            # the first one taking a commit of its own.
            self._wake_scheduled = True
            loop.call_soon(self._wake_writer)
        return await done

    def _wake_writer(self) -> None:
        self._wake_scheduled = False
        self._wake.set()

    async def close(self) -> None:
        """Commit what is queued, then stop (on shutdown)."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(thread.join)
        self._thread = None
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        self._answer(self._take_all(), ok=False)  # only if the thread died first

    def _start(self) -> None:
        self._stopping = False
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._thread = threading.Thread(target=self._run, name="click-writer", daemon=True)
        self._thread.start()

    def _take_all(self) -> list[_Pending]:
        taken = []
        while self._pending:
            taken.append(self._pending.popleft())
        return taken

    def _run(self) -> None:
        pending = self._pending
        try:
            while True:
                if not pending:
                    if self._stopping:
                        return
                    self._idle = True
                    if not pending:  # re-checked after saying so: record() sets the event
                        self._wake.wait()
                    self._wake.clear()
                    self._idle = False
                    continue
                batch = [pending.popleft() for _ in range(min(len(pending), self._max))]
                ok = self._commit([row for row, _ in batch])
                self._hand_back(batch, ok)
        finally:
            self._disconnect()

    def _hand_back(self, batch: list[_Pending], ok: bool) -> None:
        """One call into each waiting event loop (in a server there is one)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in batch:
            by_loop.setdefault(item[1].get_loop(), []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there
                loop.call_soon_threadsafe(self._answer, items, ok)

    @staticmethod
    def _answer(batch: list[_Pending], ok: bool) -> None:
        for _, done in batch:
            if not done.done():
                done.set_result(ok)

    def _commit(self, rows: list[ClickRow]) -> bool:
        started = time.perf_counter()
        try:
            session = self._session or self._connect()
            with write_lock(self._runtime.engine), session.begin():
                tracking.write_click_rows(session, rows)
        except Exception:
            metrics.CLICK_WRITE_FAILURES.inc()
            log.exception("could not commit %d clicks", len(rows))
            self._disconnect()  # the next batch starts on a fresh connection
            return False
        metrics.CLICK_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.CLICK_BATCH_SIZE.observe(len(rows))
        metrics.CLICKS_WRITTEN.inc(len(rows))
        return True

    def _connect(self) -> Session:
        # A write connection (on SQLite: BEGIN IMMEDIATE) kept for the thread's life.
        self._connection = self._runtime.engine.connect().execution_options(**{WRITE_OPTION: True})
        if self._checkpointer is not None:
            # Checkpoints happen in the background (core/checkpoint.py), not in a
            # batch's commit. The other connections keep SQLite's default.
            # On the driver's connection: through SQLAlchemy it would begin a
            # transaction, and the session would then only ever join it.
            driver = self._connection.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_autocheckpoint=0")
        self._session = Session(bind=self._connection, expire_on_commit=False)
        return self._session

    def _disconnect(self) -> None:
        session, connection = self._session, self._connection
        self._session = self._connection = None
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            if session is not None:
                session.close()
            if connection is not None:
                connection.close()
