"""The web process's link to the store (web/storelink.py), against a store double
on a real socket pair that records the frames it gets and acknowledges each."""

from __future__ import annotations

import asyncio
import marshal
import socket
import threading

import pytest

from partnerloop.web.storelink import ACK_HEAD, FRAME_HEAD, WEBHOOKS, StoreLink
from tests.support import aio


def _recording_store(sock: socket.socket, frames: list[list[bytes]]) -> threading.Thread:
    """Reads frames until the peer hangs up; answers each committed, with one
    outcome per item (its length)."""

    def run() -> None:
        buffer = b""
        while True:
            data = sock.recv(1 << 20)
            if not data:
                sock.close()
                return
            buffer += data
            while len(buffer) >= FRAME_HEAD.size:
                length, frame_id, kind = FRAME_HEAD.unpack_from(buffer)
                end = FRAME_HEAD.size + length
                if len(buffer) < end:
                    break
                assert kind == WEBHOOKS
                items = marshal.loads(buffer[FRAME_HEAD.size : end])  # noqa: S302
                buffer = buffer[end:]
                frames.append(items)
                outcomes = marshal.dumps([len(item) for item in items])
                sock.sendall(ACK_HEAD.pack(frame_id, 1, len(outcomes)) + outcomes)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_large_items_are_split_over_frames_within_the_budget_and_all_answered() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    frames: list[list[bytes]] = []
    store = _recording_store(theirs, frames)
    link = StoreLink(lambda: ours, kind=WEBHOOKS, frame_budget=100)
    items = [bytes([n]) * size for n, size in enumerate([40, 40, 40, 90, 10, 150, 5])]

    async def scenario() -> list[tuple[bool, object]]:
        try:
            await link.submit(b"warm-up")  # connects; everything below arrives in one turn
            return list(
                await asyncio.gather(*(link.submit(item, size=len(item)) for item in items))
            )
        finally:
            await link.close()

    answers = aio.run(scenario)
    store.join(timeout=10)

    # Each caller got its own outcome, in order, every one committed.
    assert answers == [(True, len(item)) for item in items]
    # Sent in the order given, a new frame whenever the next item would pass the
    # budget; an item larger than the budget goes alone.
    assert frames[1:] == [items[0:2], items[2:3], items[3:5], items[5:6], items[6:7]]


def test_a_link_used_from_a_new_event_loop_after_the_first_closed_connects_again() -> None:
    # Given a link whose first writes came from a loop that has since closed (a
    # client that runs one loop per call), its connection left behind with it
    frames: list[list[bytes]] = []
    stores = []

    def open_socket() -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stores.append(_recording_store(theirs, frames))
        return ours

    link = StoreLink(open_socket, kind=WEBHOOKS)
    assert aio.run(lambda: link.submit(b"first")) == (True, 5)

    # When the next write comes from another loop, it is answered (it used to wait
    # forever on the closed loop's connection)
    async def second() -> tuple[bool, object]:
        try:
            return await asyncio.wait_for(link.submit(b"second!"), 10)
        finally:
            await link.close()

    assert aio.run(second) == (True, 7)
    assert frames == [[b"first"], [b"second!"]]
    assert len(stores) == 2


def test_a_link_refuses_a_second_loop_while_the_first_is_open() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    frames: list[list[bytes]] = []
    _recording_store(theirs, frames)
    link = StoreLink(lambda: ours, kind=WEBHOOKS)

    async def from_another_loop() -> None:
        await link.submit(b"two")

    def scenario() -> None:
        first = asyncio.new_event_loop()
        try:
            assert first.run_until_complete(link.submit(b"one")) == (True, 3)
            with pytest.raises(RuntimeError, match="one event loop at a time"):
                asyncio.run(from_another_loop())
            first.run_until_complete(link.close())
        finally:
            first.close()

    # In a thread of its own: the browser tests keep a loop running in the main one.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            scenario()
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not errors, errors[0]
