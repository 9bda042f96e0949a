"""A worker's PostgreSQL sessions run at the worker's lower priority when the
database server is on this machine and the worker may renice it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
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


AUTOGROUP_PROBE = """
import sys
from partnerloop.core import priority
changed = priority.lower_own_autogroup(int(sys.argv[1]))
print(changed, priority.autogroup_nice())
"""


@pytest.mark.skipif(not priority.AUTOGROUP.exists(), reason="this kernel has no autogroups")
@pytest.mark.parametrize("own_session", [True, False], ids=["session-leader", "shared-session"])
def test_a_worker_leading_its_own_session_lowers_its_scheduling_group(own_session: bool) -> None:
    # When a process calls it in a session of its own, or in this test's session
    done = subprocess.run(
        [sys.executable, "-c", AUTOGROUP_PROBE, "6"],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=own_session,
        check=True,
    )
    # Then only the session leader's group (its own) gets the nice value; this
    # test's group (None when it runs in the root group, as under some CI) is untouched
    ours = str(priority.autogroup_nice())
    assert done.stdout.split() == (["True", "6"] if own_session else ["False", ours])
    assert str(priority.autogroup_nice()) == ours


GROUPLESS_PROBE = """
import sys
from pathlib import Path
from partnerloop.core import priority
print(priority.lower_own_autogroup(6, autogroup=Path(sys.argv[1])))
"""


def test_a_session_leader_in_the_root_group_changes_nothing(tmp_path: Path) -> None:
    # Given a process whose group file reads empty (the root group: pid 1's, and
    # what it starts without a new session), leading its own session
    root_group = tmp_path / "autogroup"
    root_group.write_text("")
    done = subprocess.run(
        [sys.executable, "-c", GROUPLESS_PROBE, str(root_group)],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        check=True,
    )
    # Then it says nothing was changed and writes nothing
    assert done.stdout.split() == ["False"]
    assert root_group.read_text() == ""
    assert priority.autogroup_nice(root_group) is None
    root_group.write_text("/autogroup-9 nice 3\n")
    assert priority.autogroup_nice(root_group) == 3


def test_nice_zero_leaves_the_group_alone() -> None:
    assert not priority.lower_own_autogroup(0)
