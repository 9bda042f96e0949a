"""The redirect's side of the click store (web/clickserver.py): every redirect
waits until its click is committed, but many redirects share one commit.

Clicks that arrive in one turn of the event loop go to the store as one frame
at the end of the turn; the store answers each frame once its commit is on
disk. This side only encodes and waits: no database work, no thread taking
turns at this interpreter's lock (the store is its own process in `serve`),
so the HTTP process spends its time on HTTP.

The store is reached by a Unix socket path (its own process) or started in a
thread of this process (tests, embedded apps). If the connection drops (the
store restarting), the clicks it carried are answered False (the shopper still
goes on, without a click id: nothing downstream refers to a click we do not
have) and the next click connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from partnerloop.runtime import Runtime
from partnerloop.tracking.service import ClickRecord
from partnerloop.web import metrics
from partnerloop.web.clickserver import ACK, EPOCH, FRAME_HEAD, ClickServer

log = logging.getLogger("partnerloop.clicks")

_CLOSE_WAIT_SECONDS = 30.0
_COMPLAIN_EVERY_SECONDS = 10.0


def encode(click: ClickRecord) -> tuple:  # type: ignore[type-arg]
    """A click as a plain tuple marshal can carry (clickserver.decode_click)."""
    moment = click.created_at - EPOCH
    micros = (moment.days * 86_400 + moment.seconds) * 1_000_000 + moment.microseconds
    return (*click[:4], micros, *click[5:])


class _Link(asyncio.Protocol):
    def __init__(self, writer: ClickWriter) -> None:
        self._writer = writer

    def data_received(self, data: bytes) -> None:
        self._writer._acknowledged(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._writer._lost()


class ClickWriter:
    def __init__(self, open_socket: Callable[[], socket.socket]) -> None:
        self._open_socket = open_socket
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Future[bool] | None = None
        self._batch: list[tuple] = []  # type: ignore[type-arg]
        self._waiting: list[asyncio.Future[bool]] = []
        self._flush_scheduled = False
        self._in_flight: dict[int, tuple[list[asyncio.Future[bool]], float]] = {}
        self._next_id = 0
        self._acks = bytearray()
        self._drained: asyncio.Event | None = None
        self._complained_at = 0.0
        self._threads: list[threading.Thread] = []

    @classmethod
    def to_socket(cls, path: Path) -> ClickWriter:
        """Send to a click store listening at `path` (serve's own process)."""

        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
            except OSError:
                sock.close()
                raise
            return sock

        return cls(open_socket)

    @classmethod
    def in_thread(cls, runtime: Runtime) -> ClickWriter:
        """Run the click store in a thread of this process, started on first use."""
        writer: ClickWriter

        def open_socket() -> socket.socket:
            sock, thread = ClickServer.in_thread(
                runtime.engine, runtime.cipher, batch_max=runtime.settings.click_batch_max
            )
            writer._threads.append(thread)
            return sock

        writer = cls(open_socket)
        return writer

    async def record(self, click: ClickRecord) -> bool:
        """Queue a click and wait for its commit. False if it was not committed."""
        if self._transport is None and not await self._connect():
            return False
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._batch.append(encode(click))
        self._waiting.append(done)
        if not self._flush_scheduled:
            # At the end of this turn of the loop, not now: the clicks the loop is
            # about to handle in the same turn share the frame and the commit.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await done

    async def _connect(self) -> bool:
        if self._connecting is not None:
            return await self._connecting
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        connected = False
        try:
            sock = self._open_socket()
            transport, _ = await loop.create_unix_connection(lambda: _Link(self), sock=sock)
            self._transport = transport
            connected = True
        except OSError:
            self._complain("cannot reach the click store; redirecting without recording")
        finally:
            self._connecting.set_result(connected)
            self._connecting = None
        return connected

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, waiting = self._batch, self._waiting
        self._batch, self._waiting = [], []
        if not batch:
            return
        if self._transport is None or self._transport.is_closing():
            _answer(waiting, False)
            return
        batch_id = self._next_id
        self._next_id = (batch_id + 1) & 0xFFFFFFFF
        payload = marshal.dumps(batch)
        try:
            self._transport.write(FRAME_HEAD.pack(len(payload), batch_id) + payload)
        except Exception:  # the store went away this very moment
            log.exception("could not send clicks to the click store")
            _answer(waiting, False)
            return
        self._in_flight[batch_id] = (waiting, time.perf_counter())

    def _acknowledged(self, data: bytes) -> None:
        acks = self._acks
        acks += data
        size = ACK.size
        usable = len(acks) - len(acks) % size
        now = time.perf_counter()
        for batch_id, ok in ACK.iter_unpack(memoryview(acks)[:usable]):
            sent = self._in_flight.pop(batch_id, None)
            if sent is None:
                continue
            waiting, started = sent
            metrics.CLICK_BATCH_SIZE.observe(len(waiting))
            if ok:
                metrics.CLICK_COMMIT_SECONDS.observe(now - started)
                metrics.CLICKS_WRITTEN.inc(len(waiting))
            else:
                metrics.CLICK_WRITE_FAILURES.inc()
            _answer(waiting, bool(ok))
        del acks[:usable]
        if not self._in_flight and self._drained is not None:
            self._drained.set()

    def _lost(self) -> None:
        self._transport = None
        if self._in_flight:
            self._complain("the click store went away; its unanswered clicks are not recorded")
        for waiting, _ in self._in_flight.values():
            metrics.CLICK_WRITE_FAILURES.inc()
            _answer(waiting, False)
        self._in_flight.clear()
        self._acks.clear()
        if self._drained is not None:
            self._drained.set()

    def _complain(self, message: str) -> None:
        # Once per few seconds: a store that is down would otherwise log every click.
        now = time.monotonic()
        if now - self._complained_at >= _COMPLAIN_EVERY_SECONDS:
            self._complained_at = now
            log.error(message)

    async def close(self) -> None:
        """Wait for the clicks already sent to be answered, then disconnect (on shutdown)."""
        if self._connecting is not None:
            # Clicks waiting for the connection queue up once it is made.
            await asyncio.shield(self._connecting)
            await asyncio.sleep(0)
        if self._flush_scheduled:
            self._flush()
        transport = self._transport
        if transport is not None:
            if self._in_flight:
                self._drained = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), _CLOSE_WAIT_SECONDS)
            transport.close()
        self._transport = None
        threads, self._threads = self._threads, []
        for thread in threads:  # a thread store ends when its socket closes
            await asyncio.to_thread(thread.join, _CLOSE_WAIT_SECONDS)


def _answer(waiting: list[asyncio.Future[bool]] | tuple[()], ok: bool) -> None:
    for done in waiting:
        if not done.done():
            done.set_result(ok)
