"""The web process's side of the store (web/store.py): a request hands its
write (a click, a webhook) to the store and waits until the store says it is
committed; many requests share one commit.

Writes that arrive in one turn of the event loop go to the store as one frame at
the end of the turn; the store answers each frame once its commit is on disk.
This side only encodes and waits: no database work and no thread taking turns at
this interpreter's lock (the store is its own process in `serve`), so the HTTP
process spends its time on HTTP.

Wire format, both ways little-endian. To the store: a frame of (payload length
u32, frame id u32, kind u8, payload), the payload a marshal of a list of items
(a click tuple, a webhook tuple). Back: (frame id u32, committed u8, payload
length u32, payload) per frame after its commit, the payload empty (clicks) or a
marshal of one outcome per item (webhooks: accepted, refused, ...). marshal is
fast and runs no code; the socket sits in a directory only this user can enter,
and anyone who can reach it can read the database anyway.

If the connection drops (the store restarting), the writes it carried are
answered not committed and the next write connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("partnerloop.store")

FRAME_HEAD = struct.Struct("<IIB")  # payload length, frame id, kind
ACK_HEAD = struct.Struct("<IBI")  # frame id, 1 committed / 0 failed, payload length
MAX_PAYLOAD = 64 << 20  # a frame larger than this is a broken peer, not a batch
# A frame is sent early once its items reach this size (webhook bodies may be up
# to 5 MiB each), so a burst of large ones never makes a frame the store refuses.
FRAME_BUDGET = 16 << 20
CLICKS = 0
WEBHOOKS = 1
KINDS = (CLICKS, WEBHOOKS)

_CLOSE_WAIT_SECONDS = 30.0
_COMPLAIN_EVERY_SECONDS = 10.0

# What a write's caller gets back: committed or not, and the store's outcome for
# the item (None where the kind has none, as for clicks).
Answer = tuple[bool, Any]
# Told per answered frame: items, committed, seconds from sending to the answer.
OnAnswer = Callable[[int, bool, float], None]


class _Link(asyncio.Protocol):
    def __init__(self, link: StoreLink) -> None:
        self._link = link

    def data_received(self, data: bytes) -> None:
        self._link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._lost()


class StoreLink:
    """One connection to the store, for writes of one kind."""

    def __init__(
        self,
        open_socket: Callable[[], socket.socket],
        *,
        kind: int,
        on_answer: OnAnswer | None = None,
        frame_budget: int = FRAME_BUDGET,
    ) -> None:
        self._open_socket = open_socket
        self._kind = kind
        self._on_answer = on_answer
        self._frame_budget = frame_budget
        self._batch_bytes = 0
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Future[bool] | None = None
        self._batch: list[Any] = []
        self._waiting: list[asyncio.Future[Answer]] = []
        self._flush_scheduled = False
        self._in_flight: dict[int, tuple[list[asyncio.Future[Answer]], float]] = {}
        self._next_id = 0
        self._incoming = bytearray()
        self._drained: asyncio.Event | None = None
        self._complained_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket: socket.socket | None = None  # the transport's, to close it without its loop
        self.threads: list[threading.Thread] = []  # stores run in this process (tests)

    async def submit(self, item: Any, *, size: int = 0) -> Answer:
        """Queue a write and wait for its commit: (committed, the store's outcome).
        `size`: about how many bytes the item takes on the wire (large ones)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._move_to(loop)
        if self._transport is None and not await self._connect():
            return False, None
        return await self._queue(loop, item, size)

    def submit_soon(self, item: Any) -> asyncio.Future[Answer] | None:
        """Queue a write as `submit` does, from a callback rather than a coroutine:
        the future of its answer. None, with nothing queued, while this link has
        no connection from the running loop (`submit` makes one)."""
        loop = asyncio.get_running_loop()
        if self._transport is None or loop is not self._loop:
            return None
        return self._queue(loop, item, 0)

    def _queue(
        self, loop: asyncio.AbstractEventLoop, item: Any, size: int
    ) -> asyncio.Future[Answer]:
        done: asyncio.Future[Answer] = loop.create_future()
        if self._batch and self._batch_bytes + size > self._frame_budget:
            self._flush()  # the frame so far goes now; this item starts the next
        self._batch.append(item)
        self._batch_bytes += size
        self._waiting.append(done)
        if not self._flush_scheduled:
            # At the end of this turn of the loop, not now: the writes the loop is
            # about to handle in the same turn share the frame and the commit.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return done

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve writes from `loop` from now on. The connection lives on the loop
        it was made from; a client that runs a loop per call and closes it after
        (Starlette's TestClient outside `with`) leaves it behind with that loop,
        so a new one is made here. The old socket is closed through its socket
        object (which the transport shares: closing it twice is harmless, unlike
        closing the descriptor itself), so the store sees the hang-up."""
        old = self._loop
        if old is not None and not old.is_closed():
            raise RuntimeError(
                "a store link serves one event loop at a time; this one is still open"
            )
        if self._socket is not None:
            self._socket.close()
        self._transport, self._socket = None, None
        self._connecting = None
        self._batch, self._waiting, self._batch_bytes = [], [], 0
        self._flush_scheduled = False
        self._in_flight.clear()  # their callers went with the closed loop
        self._incoming.clear()
        self._drained = None
        self._loop = loop

    async def _connect(self) -> bool:
        if self._connecting is not None:
            return await self._connecting
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        connected = False
        try:
            sock = self._open_socket()
            transport, _ = await loop.create_unix_connection(lambda: _Link(self), sock=sock)
            self._transport, self._socket = transport, sock
            connected = True
        except OSError:
            self._complain("cannot reach the store")
        finally:
            self._connecting.set_result(connected)
            self._connecting = None
        return connected

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, waiting = self._batch, self._waiting
        self._batch, self._waiting, self._batch_bytes = [], [], 0
        if not batch:
            return
        if self._transport is None or self._transport.is_closing():
            _answer(waiting, False, None)
            return
        frame_id = self._next_id
        self._next_id = (frame_id + 1) & 0xFFFFFFFF
        payload = marshal.dumps(batch)
        try:
            self._transport.write(FRAME_HEAD.pack(len(payload), frame_id, self._kind) + payload)
        except Exception:  # the store went away this very moment
            log.exception("could not send to the store")
            _answer(waiting, False, None)
            return
        self._in_flight[frame_id] = (waiting, time.perf_counter())

    def _received(self, data: bytes) -> None:
        incoming = self._incoming
        incoming += data
        start, head = 0, ACK_HEAD.size
        now = time.perf_counter()
        while len(incoming) - start >= head:
            frame_id, ok, length = ACK_HEAD.unpack_from(incoming, start)
            end = start + head + length
            if len(incoming) < end:
                break
            outcomes = marshal.loads(bytes(incoming[start + head : end])) if length else None  # noqa: S302
            start = end
            sent = self._in_flight.pop(frame_id, None)
            if sent is None:
                continue
            waiting, started = sent
            if self._on_answer is not None:
                self._on_answer(len(waiting), bool(ok), now - started)
            if outcomes is None or not ok:
                _answer(waiting, bool(ok), None)
            else:
                for done, outcome in zip(waiting, outcomes, strict=True):
                    if not done.done():
                        done.set_result((True, outcome))
        del incoming[:start]
        if not self._in_flight and self._drained is not None:
            self._drained.set()

    def _lost(self) -> None:
        self._transport = None
        if self._in_flight:
            self._complain("the store went away; the writes it had not answered were not stored")
        for waiting, started in self._in_flight.values():
            if self._on_answer is not None:
                self._on_answer(len(waiting), False, time.perf_counter() - started)
            _answer(waiting, False, None)
        self._in_flight.clear()
        self._incoming.clear()
        if self._drained is not None:
            self._drained.set()

    def _complain(self, message: str) -> None:
        # Once per few seconds: a store that is down would otherwise log every write.
        now = time.monotonic()
        if now - self._complained_at >= _COMPLAIN_EVERY_SECONDS:
            self._complained_at = now
            log.error(message)

    async def close(self) -> None:
        """Wait for the writes already sent to be answered, then disconnect (on shutdown)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop and self._loop is not None and self._loop.is_closed():
            self._move_to(loop)  # what was sent went with the closed loop
        if self._connecting is not None:
            # Writes waiting for the connection queue up once it is made.
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
        threads, self.threads = self.threads, []
        for thread in threads:  # a thread store ends when its socket closes
            await asyncio.to_thread(thread.join, _CLOSE_WAIT_SECONDS)


def _answer(waiting: list[asyncio.Future[Answer]], ok: bool, outcome: Any) -> None:
    for done in waiting:
        if not done.done():
            done.set_result((ok, outcome))
