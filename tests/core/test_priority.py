"""A worker's PostgreSQL sessions run at the worker's lower priority when the
database server is on this machine and the worker may renice it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from partnerloop.core import priority
from partnerloop.core.db import make_engine
from tests.conftest import Backend


def test_each_new_session_of_a_local_server_gets_the_nice_value(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    if backend.name != "postgresql":
        engine = make_engine(backend.database_url)
        assert not priority.lower_database_sessions(engine, 10)  # SQLite: in-process
        engine.dispose()
        return
    engine = create_engine(backend.database_url, pool_size=2)
    try:
        with engine.connect() as early:  # pooled before: the runtime connects as it starts
            early.execute(text("SELECT 1"))
        caplog.set_level(logging.INFO, logger="partnerloop.worker")
        assert priority.lower_database_sessions(engine, 7)
        pids = set()
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                pids.add(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
                assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert len(pids) == 2
        may_renice = os.geteuid() == 0
        for pid in pids:
            assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres: ")
            assert os.getpriority(os.PRIO_PROCESS, pid) == (7 if may_renice else 0)
        if not may_renice:
            assert "keep their priority" in caplog.text
    finally:
        engine.dispose()


def test_a_server_on_another_machine_or_nice_zero_is_left_alone() -> None:
    remote = create_engine("postgresql+psycopg://u@db.example.invalid/x")
    local = create_engine("postgresql+psycopg://u@127.0.0.1/x")
    assert not priority.lower_database_sessions(remote, 10)
    assert not priority.lower_database_sessions(local, 0)
