"""A worker's lower CPU priority, for its PostgreSQL sessions too.

`partnerloop worker` gives up CPU to `serve` (PARTNERLOOP_WORKER_NICE), but on
PostgreSQL most of an order's work runs in the database server's process for
the worker's connection, not in the worker: on a machine that runs both, those
processes competed with the ones storing clicks and webhooks at full priority.
When the database is on this machine and the worker may (root, or the same
user as the database server), each of its sessions' server processes gets the
worker's nice value as it connects. Otherwise nothing changes, said once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger("partnerloop.worker")

_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}


def lower_database_sessions(engine: Engine, nice: int) -> bool:
    """Give every new PostgreSQL connection's server process `nice` (from now
    on). False (nothing done) for SQLite, a server on another machine, or nice 0."""
    if nice <= 0 or engine.dialect.name != "postgresql":
        return False
    host = engine.url.host
    if host not in _LOCAL_HOSTS and not str(host).startswith("/"):
        return False
    told = False

    @event.listens_for(engine, "connect")
    def _lower(dbapi_connection: Any, _record: Any) -> None:
        nonlocal told
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT pg_backend_pid()")
            pid = int(cursor.fetchone()[0])
        finally:
            cursor.close()
            dbapi_connection.rollback()  # the driver opened a transaction for the query
        # The pid is the server's: only a process that is a PostgreSQL backend
        # here (not one of another machine or container) is touched.
        if not _is_postgres_backend(pid):
            if not told:
                told = True
                log.info("database sessions keep their priority: server not on this machine")
            return
        try:
            os.setpriority(os.PRIO_PROCESS, pid, max(nice, os.getpriority(os.PRIO_PROCESS, pid)))
        except OSError as error:  # not root nor the server's user
            if not told:
                told = True
                log.info("database sessions keep their priority: %s", error.strerror)

    # Connections already in the pool (the runtime reads settings as it starts)
    # were made before the listener: closed, so each is made again through it.
    engine.dispose()
    return True


AUTOGROUP = Path("/proc/self/autogroup")


def lower_own_autogroup(nice: int, *, autogroup: Path = AUTOGROUP) -> bool:
    """Give this process's scheduling group `nice` when the group is its own.

    With Linux's autogroups on (the default on most distributions), every
    session is a group and the CPU is shared between groups first: a nice
    value counts only inside its group. A worker started in a session of its
    own (setsid, as a service manager or a script's child) kept an equal share
    with serve's group, nice or not (PostgreSQL ingestion with two workers
    running: 0.11-0.12x of the reference before this, 0.13-0.16x after). Only a
    session leader's group is its own; one sharing a terminal's session is left
    alone (its nice counts there). False when nothing was changed."""
    if nice <= 0 or os.getsid(0) != os.getpid():
        return False
    current = autogroup_nice(autogroup)
    if current is None or current >= nice:
        return False
    try:
        autogroup.write_text(str(nice))
    except OSError:  # not allowed
        return False
    return True


def autogroup_nice(autogroup: Path = AUTOGROUP) -> int | None:
    """The nice value of this process's scheduling group ("/autogroup-85 nice 0").
    None when it has no group of its own: a kernel without autogroups, or a
    process in the root group, whose file reads empty (pid 1 and what it starts
    without a new session, as some CI sandboxes do)."""
    try:
        return int(autogroup.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _is_postgres_backend(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres: ")
    except OSError:
        return False
