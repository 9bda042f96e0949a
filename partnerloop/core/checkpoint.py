"""SQLite WAL checkpoints off the click path.

SQLite copies the write-ahead log back into the database file (a checkpoint)
inside whichever commit finds the log past 1,000 pages. Under a stream of
clicks that is the click writer's commit, so every few seconds a batch of
shoppers waited for a checkpoint's copy and fsync of megabytes. The click
writer's connection turns that off and this thread checkpoints instead, in the
background: a PASSIVE checkpoint waits for no one and stops no writer.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger("partnerloop.db")


class WalCheckpointer:
    def __init__(self, engine: Engine, *, interval_seconds: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def checkpoint(self) -> None:
        with self._engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except Exception:  # a busy or closing database: the next round tries again
                log.warning("WAL checkpoint failed", exc_info=True)
        try:
            self.checkpoint()  # leave a short log behind on shutdown
        except Exception:
            log.warning("WAL checkpoint failed", exc_info=True)
