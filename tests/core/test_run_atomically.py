"""core.db.run_atomically: statements straight on the driver, all or nothing."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from partnerloop.core.db import make_engine, run_atomically


def _engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'atomic.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    return engine


def _count(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_a_failing_statement_leaves_nothing_behind(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    with pytest.raises(sqlite3.IntegrityError):
        run_atomically(driver, engine.dialect, [("INSERT INTO t VALUES (?)", (1,))] * 2)
    assert _count(engine) == 0
    run_atomically(driver, engine.dialect, [("INSERT INTO t VALUES (?)", (1,))])
    assert _count(engine) == 1
    pooled.close()


def test_a_writer_without_busy_timeout_waits_for_another_connections_lock(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path)
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    driver.execute("PRAGMA busy_timeout=0")  # as the click store's connection
    holder = sqlite3.connect(tmp_path / "atomic.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    # Plainly, it would fail at once:
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        driver.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(0.2)
        holder.execute("COMMIT")

    releaser = threading.Thread(target=release)
    releaser.start()
    run_atomically(driver, engine.dialect, [("INSERT INTO t VALUES (?)", (2,))])
    releaser.join()
    assert _count(engine) == 2
    holder.close()
    pooled.close()
