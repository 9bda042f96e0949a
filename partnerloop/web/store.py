"""The store: the one place clicks and webhooks are written, group-committed.

Redirects (web/clickwriter.py) send their clicks here, and the webhook handler
(web/hooks.py) the webhooks it receives, over a local socket (web/storelink.py
has the wire format); each answers its client only when this side says the
batch is committed. While it commits one batch, what arrives waits in the socket
buffers and goes into the next commit together: at low traffic a write waits
for one small commit, at high traffic a commit carries as many as arrived
meanwhile (up to PARTNERLOOP_CLICK_BATCH_MAX). Webhooks are verified against
their connector's secrets and sealed here too (web/hookstore.py), so all the
HTTP process does for one is read it, send it and answer.

Where it runs is the point (benchmarks/RESULTS.md): `partnerloop serve` starts
it as a process of its own (`python -m partnerloop.web.store`), so
preparing rows (IP encrypted, user agent classified; a webhook verified,
deflated and encrypted), inserting and committing take no turns at the HTTP
process's interpreter lock; in one process the redirects and the writer each ran
at about half speed, and webhooks were accepted at about half the rate
(benchmarks/RESULTS.md, issue 6 session 4). Every `serve --workers`
process sends to the same one, so on SQLite there is one writer, not several
polling for SQLite's lock. Tests and embedded apps run the same loop in a
thread (link_in_thread).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import marshal
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from partnerloop.core import heap
from partnerloop.core.checkpoint import WalCheckpointer
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import run_atomically, write_lock
from partnerloop.tracking import service as tracking
from partnerloop.tracking.service import ClickRecord, PreparedClicks
from partnerloop.web import hookstore
from partnerloop.web.hookstore import HookStore
from partnerloop.web.storelink import (
    ACK_HEAD,
    CLICKS,
    FRAME_HEAD,
    MAX_PAYLOAD,
    WEBHOOKS,
    OnAnswer,
    StoreLink,
)

log = logging.getLogger("partnerloop.store")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How `serve --workers N` tells its server processes where the store listens.
STORE_SOCKET_ENV = "PARTNERLOOP_STORE_SOCKET"
_MICROSECOND = timedelta(microseconds=1)


def decode_click(values: tuple) -> ClickRecord:  # type: ignore[type-arg]
    """A click tuple off the wire (ClickWriter.encode) back to a ClickRecord."""
    (id_, program, link, affiliate, micros, ip, agent, referrer, landing, subs, unique) = values
    return ClickRecord(
        id=id_,
        program_id=program,
        link_id=link,
        affiliate_id=affiliate,
        created_at=EPOCH + _MICROSECOND * micros,
        ip=ip,
        user_agent=agent,
        referrer=referrer,
        landing_url=landing,
        subs=subs,
        is_unique=unique,
    )


class _Peer:
    """One redirect process's connection and the bytes of its unfinished frame."""

    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()


_Batch = tuple[_Peer, int, PreparedClicks]  # sender, frame id, its clicks
_Hooks = tuple[_Peer, int, list[hookstore.Hook]]  # sender, frame id, its webhooks
# What one turn of the loop received, to commit together.
_Arrived = tuple[list[_Batch], list[_Hooks]]
# Per frame: its sender, id, committed, and the outcomes to send back (b"": none).
_Done = list[tuple[_Peer, int, bool, bytes]]


class Store:
    def __init__(self, engine: Engine, cipher: FieldCipher, *, batch_max: int) -> None:
        self._engine = engine
        self._cipher = cipher
        self._batch_max = batch_max
        self._dialect = engine.dialect
        self._driver: Any = None  # the DBAPI connection, kept for the store's life
        self._pooled: Any = None
        self._checkpointer = WalCheckpointer(engine) if engine.dialect.name == "sqlite" else None
        self._hooks = HookStore(engine, cipher)

    @classmethod
    def in_thread(
        cls, engine: Engine, cipher: FieldCipher, *, batch_max: int
    ) -> tuple[socket.socket, threading.Thread]:
        """A store serving one connection from a thread of this process; the
        thread ends when the other end of the returned socket closes."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        server = cls(engine, cipher, batch_max=batch_max)
        thread = threading.Thread(
            target=server.serve,
            kwargs={"peers": [theirs], "stop": threading.Event()},
            name="click-writer",
            daemon=True,
        )
        thread.start()
        return ours, thread

    def serve(
        self,
        *,
        stop: threading.Event,
        listener: socket.socket | None = None,
        peers: list[socket.socket] | None = None,
        parent_pid: int | None = None,
    ) -> None:
        """Commit what arrives until `stop` is set (then what is already here
        is committed first), the parent process is gone, or, with no listener,
        the last peer has hung up.

        One thread does it all: receive, prepare, commit, answer. A second
        thread committing while this one prepared the next batch was slower
        (benchmarks/RESULTS.md): each time the committer came back from the
        database it waited for the interpreter lock behind the preparing."""
        selector = selectors.DefaultSelector()
        if listener is not None:
            selector.register(listener, selectors.EVENT_READ, None)
        for sock in peers or []:
            selector.register(sock, selectors.EVENT_READ, _Peer(sock))
        if self._checkpointer is not None:
            self._checkpointer.start()
        try:
            while True:
                ending = stop.is_set() or (parent_pid is not None and os.getppid() != parent_pid)
                arrived: _Arrived = ([], [])
                # Blocks only when idle: after a commit, whatever came in meanwhile
                # is already waiting, and goes into the next commit together.
                for key, _ in selector.select(0 if ending else 1.0):
                    if key.data is None:
                        sock, _ = listener.accept()  # type: ignore[union-attr]
                        selector.register(sock, selectors.EVENT_READ, _Peer(sock))
                    elif not self._receive(key.data, arrived):
                        selector.unregister(key.fileobj)
                        key.fileobj.close()  # type: ignore[union-attr]
                if arrived[0] or arrived[1]:
                    _acknowledge(self.commit_batches(arrived[0]) + self.commit_hooks(arrived[1]))
                elif ending or (listener is None and not selector.get_map()):
                    return
        finally:
            for key in list(selector.get_map().values()):
                with contextlib.suppress(OSError):
                    key.fileobj.close()  # type: ignore[union-attr]
            selector.close()
            if self._checkpointer is not None:
                self._checkpointer.stop()
            self._disconnect()

    def _receive(self, peer: _Peer, arrived: _Arrived) -> bool:
        """Read what the peer sent; complete frames become batches. False when
        the peer is gone (or sent garbage, and is hung up on)."""
        try:
            data = peer.sock.recv(1 << 20)
        except OSError:
            return False
        if not data:
            return False
        buffer = peer.buffer
        buffer += data
        start = 0
        head = FRAME_HEAD.size
        while len(buffer) - start >= head:
            length, frame_id, kind = FRAME_HEAD.unpack_from(buffer, start)
            if length > MAX_PAYLOAD or kind not in (CLICKS, WEBHOOKS):
                log.error("a frame of %d bytes, kind %d: not one of ours; hung up", length, kind)
                return False
            end = start + head + length
            if len(buffer) < end:
                break
            try:
                items = marshal.loads(bytes(buffer[start + head : end]))  # noqa: S302
                if kind == CLICKS:
                    prepared = tracking.prepare_clicks(
                        self._dialect, self._cipher, [decode_click(c) for c in items]
                    )
                    arrived[0].append((peer, frame_id, prepared))
                else:
                    arrived[1].append((peer, frame_id, [hookstore.decode(h) for h in items]))
            except Exception:
                log.exception("a malformed frame; hung up")
                return False
            start = end
        del buffer[:start]
        return True

    def commit_batches(self, batches: list[_Batch]) -> _Done:
        """Commit clicks in groups of up to batch_max (a frame is never split);
        each frame with whether it was committed."""
        width = len(tracking.CLICK_COLUMNS)
        done: _Done = []
        group: list[_Batch] = []
        size = 0

        def commit() -> None:
            ok = self._commit([b[2] for b in group])
            done.extend((peer, frame_id, ok, b"") for peer, frame_id, _ in group)

        for batch in batches:
            clicks = len(batch[2].values) // width
            if group and size + clicks > self._batch_max:
                commit()
                group, size = [], 0
            group.append(batch)
            size += clicks
        if group:
            commit()
        return done

    def commit_hooks(self, frames: list[_Hooks]) -> _Done:
        """Verify and store webhooks in groups of up to batch_max (a frame is never
        split); each frame with its webhooks' outcomes."""
        done: _Done = []
        group: list[_Hooks] = []
        size = 0

        def commit() -> None:
            try:
                outcomes = self._hooks.commit([hook for frame in group for hook in frame[2]])
            except Exception:  # failed before any transaction: the senders answer 503
                log.exception("could not store %d webhooks", size)
                done.extend((peer, frame_id, False, b"") for peer, frame_id, _ in group)
                return
            position = 0
            for peer, frame_id, hooks in group:
                mine = outcomes[position : position + len(hooks)]
                position += len(hooks)
                done.append((peer, frame_id, True, marshal.dumps(mine)))

        for frame in frames:
            if group and size + len(frame[2]) > self._batch_max:
                commit()
                group, size = [], 0
            group.append(frame)
            size += len(frame[2])
        if group:
            commit()
        return done

    def _commit(self, prepared: list[PreparedClicks]) -> bool:
        # Metrics are kept by the redirects' side (web/clickwriter.py): this may
        # be a process nobody scrapes.
        try:
            driver = self._driver or self._connect()
            statements = tracking.click_statements(self._dialect, prepared)
            with write_lock(self._engine):
                run_atomically(driver, self._dialect, statements)
        except Exception:
            log.exception("could not commit %d click batches", len(prepared))
            self._disconnect()  # the next batch starts on a fresh connection
            return False
        return True

    def _connect(self) -> Any:
        # The driver's own connection, kept for the store's life: no pool
        # checkout, reset or session set-up per batch.
        self._pooled = self._engine.raw_connection()
        self._driver = self._pooled.driver_connection
        if self._checkpointer is not None:
            # Checkpoints happen in the background (core/checkpoint.py), not in a
            # batch's commit. The other connections keep SQLite's default.
            self._driver.execute("PRAGMA wal_autocheckpoint=0")
            # Waits for another process's write lock in short polls (core.db
            # run_atomically), not in SQLite's sleeps of up to 100 ms.
            self._driver.execute("PRAGMA busy_timeout=0")
        return self._driver

    def _disconnect(self) -> None:
        pooled = self._pooled
        self._pooled = self._driver = None
        if pooled is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                pooled.invalidate()  # not back to the pool: it may be mid-transaction


def _acknowledge(done: _Done) -> None:
    """Tell each committed (or failed) frame's sender."""
    acks: dict[_Peer, list[bytes]] = {}
    for peer, frame_id, ok, outcomes in done:
        answers = acks.setdefault(peer, [])
        answers.append(ACK_HEAD.pack(frame_id, ok, len(outcomes)))
        if outcomes:
            answers.append(outcomes)
    for peer, packed in acks.items():
        with contextlib.suppress(OSError):  # gone: what it sent is committed anyway
            peer.sock.sendall(b"".join(packed))


def link_to(path: Path, *, kind: int, on_answer: OnAnswer | None = None) -> StoreLink:
    """A link to the store listening at `path` (serve's own process)."""

    def open_socket() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            raise
        return sock

    return StoreLink(open_socket, kind=kind, on_answer=on_answer)


def link_in_thread(
    engine: Engine,
    cipher: FieldCipher,
    *,
    batch_max: int,
    kind: int,
    on_answer: OnAnswer | None = None,
) -> StoreLink:
    """A link to a store in a thread of this process (tests, embedded apps),
    started on first use; the thread ends when the link closes."""
    link: StoreLink

    def open_socket() -> socket.socket:
        sock, thread = Store.in_thread(engine, cipher, batch_max=batch_max)
        link.threads.append(thread)
        return sock

    link = StoreLink(open_socket, kind=kind, on_answer=on_answer)
    return link


def listen(path: Path) -> socket.socket:
    """A listening socket at `path`, replacing a stale one left by a crash."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(128)
    return listener


class StoreProcess:
    """`partnerloop serve`'s store as a child process, kept running: if it
    dies it is started again (the redirects meanwhile answer without a click
    id, and reconnect on their next click)."""

    def __init__(self) -> None:
        # A directory only this user can enter holds the socket (see the module doc).
        self._directory = Path(tempfile.mkdtemp(prefix="partnerloop-store-"))
        self.socket_path = self._directory / "store.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        self._process = self._spawn()
        self._monitor = threading.Thread(target=self._watch, name="store-watch", daemon=True)
        self._monitor.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [
                sys.executable,
                "-m",
                "partnerloop.web.store",
                "--socket",
                str(self.socket_path),
            ],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until it listens, or it died
        process.stdout.close()
        if line.strip() != b"ready":
            process.wait()
            raise RuntimeError(
                f"the store did not start (exit code {process.returncode}); its log says why"
            )
        return process

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("the store stopped (exit code %s); starting it again", code)
            while not self._stopping.wait(1.0):
                try:
                    process = self._spawn()
                except (OSError, RuntimeError):
                    log.exception("could not start the store; trying again")
                    continue
                self._process = process
                if self._stopping.is_set():  # stop() came while it was starting
                    process.terminate()
                    process.wait(timeout=30)
                break

    def stop(self) -> None:
        """Commit what has arrived and stop (after the redirects have drained)."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        shutil.rmtree(self._directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """The store as a process: `python -m partnerloop.web.store
    --socket PATH`, with the same PARTNERLOOP_* environment as `serve`. It says
    `ready` on stdout once it listens; it ends on SIGTERM (committing what has
    arrived) or when its parent process is gone."""
    from partnerloop.core import logs
    from partnerloop.core.db import make_engine
    from partnerloop.core.settings import Settings, load_old_secret_keys, load_secret_key

    parser = argparse.ArgumentParser(prog="python -m partnerloop.web.store")
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket to listen on")
    args = parser.parse_args(argv)
    parent = os.getppid()
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    # Clients wait on this process's commits: on SQLite it polls for the write
    # lock rather than sleeping in SQLite's steps while a worker writes.
    # No ping before each batch (on PostgreSQL 8 % of the store's time with
    # webhooks): a batch on a connection the server dropped is tried again on a
    # new one (core/groupcommit.py; clicks reconnect, Store._commit).
    engine = make_engine(settings.database_url, poll_for_lock=True, pre_ping=False)
    cipher = FieldCipher(load_secret_key(settings), load_old_secret_keys(settings))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C reaches the whole process group: serve stops us (SIGTERM) once its
    # redirects have drained, so their last clicks still have somewhere to go.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = Store(engine, cipher, batch_max=settings.click_batch_max)
    listener = listen(args.socket)
    # Once the store is built: no full collection's pause over it (core/heap.py).
    late_settle = heap.settle_now_and_later()
    print("ready", flush=True)  # the parent waits for this line
    try:
        store.serve(stop=stop, listener=listener, parent_pid=parent)
    finally:
        late_settle.cancel()
        listener.close()
        engine.dispose()
        if os.getppid() != parent:
            # serve was killed and cannot tidy up: the socket and its directory go
            # with us (while serve lives, they stay for the store it restarts).
            with contextlib.suppress(OSError):
                args.socket.unlink()
                args.socket.parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
