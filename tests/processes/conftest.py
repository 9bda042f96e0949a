"""Helpers for tests that run real `partnerloop` processes.

Subprocesses share the test's database through PARTNERLOOP_* environment
variables. Their output goes to reader threads (a full pipe would stall them),
and every process a test starts is killed when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import httpx
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.db import transaction
from partnerloop.runtime import Runtime
from partnerloop.sync.models import InboundEvent, OutboxMessage
from partnerloop.sync.service import DUE_STATES, Job
from tests.conftest import REPO_ROOT, Backend, drain

PARTNERLOOP = str(REPO_ROOT / ".venv" / "bin" / "partnerloop")
DEADLINE_SECONDS = 30.0

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = DEADLINE_SECONDS,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any PARTNERLOOP_* setting, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERLOOP_")}
    # Rich tables wrap at 80 columns when stdout is not a terminal; ids and
    # e-mails must stay on one line for the assertions that look for them.
    env["COLUMNS"] = "250"
    env.update(variables)
    return env


def backend_env(backend: Backend, **variables: str) -> dict[str, str]:
    """Settings that point a subprocess at the test's database."""
    settings = backend.settings
    assert settings.secret_key_hex is not None
    return clean_env(
        PARTNERLOOP_DATA_DIR=str(settings.data_dir),
        PARTNERLOOP_DATABASE_URL=backend.database_url,
        PARTNERLOOP_SECRET_KEY=settings.secret_key_hex,
        PARTNERLOOP_LOG_LEVEL="info",
        **variables,
    )


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PARTNERLOOP, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_line(output: str) -> str:
    lines = output.rstrip("\n").split("\n")
    return lines[-1]


class Proc:
    """A running `partnerloop` command whose output is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [PARTNERLOOP, *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.popen.stdout, self._stdout), daemon=True
            ),
            threading.Thread(
                target=self._read, args=(self.popen.stderr, self._stderr), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in iter(stream.readline, ""):
            with self._lock:
                into.append(line.rstrip("\n"))
        stream.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout_lines(self) -> list[str]:
        with self._lock:
            return list(self._stdout)

    def stderr_lines(self) -> list[str]:
        with self._lock:
            return list(self._stderr)

    def output(self) -> str:
        """Everything it printed so far (stdout, then stderr)."""
        return "\n".join(self.stdout_lines() + self.stderr_lines())

    def poll(self) -> int | None:
        return self.popen.poll()

    def signal(self, number: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(number)

    def kill(self) -> int:
        """SIGKILL, like a machine losing power; returns the exit status. The
        process's own children (`serve --workers N`) go with it."""
        children = _children(self.popen.pid)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        code = self.popen.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def describe(self) -> str:
        return f"`partnerloop {' '.join(self.args)}` (pid {self.pid}) printed:\n{self.output()}"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def click_stores(parent: int) -> list[int]:
    """Live click store processes started by `parent`."""
    found = []
    for pid in _children(parent):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"partnerloop.web.store" in command and alive(pid):
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


class Processes:
    """Starts processes for one test and kills whatever is still running at its end."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, *args: str, env: dict[str, str]) -> Proc:
        proc = Proc(list(args), env)
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            with contextlib.suppress(Exception):  # keep killing the others
                proc.kill()


@pytest.fixture
def processes() -> Iterator[Processes]:
    group = Processes()
    try:
        yield group
    finally:
        group.kill_all()


def with_application_name(database_url: str, name: str) -> str:
    """Tag a process's PostgreSQL connections so pg_stat_activity can tell them apart."""
    if not database_url.startswith("postgresql"):
        return database_url
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}application_name={name}"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def observer(backend: Backend) -> Iterator[sessionmaker[Session]]:
    """Read-only sessions on the backend's database that never wait for a writer.

    The app's SQLite engine opens every transaction with BEGIN IMMEDIATE, so a
    test reading through it would queue behind a worker that holds a job's
    transaction open at a fault point. A plain engine reads the WAL snapshot.
    """
    engine = create_engine(backend.database_url)
    try:
        yield sessionmaker(engine, expire_on_commit=False)
    finally:
        engine.dispose()


@pytest.fixture
def quiet_queue(runtime: Runtime, processes: Processes) -> Iterator[Runtime]:
    """The job queue to ourselves, and left empty behind us.

    Before: run every job other tests left due, so the workers a test starts see
    only its own. After: kill the test's processes, hand the jobs they held back
    (as their leases running out would) and run what is left, so no job of ours
    turns up in a later test's worker.
    """
    drain(runtime)
    yield runtime
    processes.kill_all()
    pids = {p.pid for p in processes.started}
    with transaction(runtime.sessions) as db:
        _release(db, InboundEvent, pids)
        _release(db, OutboxMessage, pids)
    drain(runtime)


def _release(db: Session, model: type[Job], pids: set[int]) -> None:
    held = db.scalars(
        select(model).where(model.state.in_(DUE_STATES), model.locked_by.is_not(None))
    )
    for job in held:
        if worker_pid(job.locked_by) in pids:
            job.locked_by = None
            job.locked_until = None


def worker_pid(worker_id: str | None) -> int | None:
    # partnerloop.sync.worker.default_worker_id: "<host>:<pid>:<random>"
    parts = (worker_id or "").split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def write_lock_held(database_url: str) -> bool:
    """SQLite: True while some connection holds the database's write lock."""
    connection = sqlite3.connect(sqlite_path(database_url), timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            return True
        raise
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()
    return False


def pg_backend_state(engine: Engine, application_name: str) -> list[tuple[str, str]]:
    """PostgreSQL: (state, last statement) of every connection with that application name."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT state, query FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application_name},
        )
        return [(str(state), str(query)) for state, query in rows]


def wait_ready(base_url: str, proc: Proc, *, timeout: float = DEADLINE_SECONDS) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.poll()}; {proc.describe()}")
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=timeout, interval=0.1, what=f"{base_url}/healthz")
