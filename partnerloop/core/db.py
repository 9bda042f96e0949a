"""Database engine, sessions, the declarative base and dialect-neutral upserts.

One schema serves SQLite (embedded default) and PostgreSQL (scale-out). Where
the two differ (insert-on-conflict, row locking) the difference lives here.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Execution option marking a connection that will write (see _configure_sqlite).
WRITE_OPTION = "partnerloop_writes"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends (SQLite has no time zones, so store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def make_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    poll_for_lock: bool = False,
    pre_ping: bool = True,
) -> Engine:
    """`poll_for_lock` (SQLite): a write transaction waiting for another process's
    write lock tries again every half millisecond (see _begin_immediate) instead
    of sleeping in SQLite's steps of up to 100 ms; for the store's process, whose
    writes clients are waiting on. `pre_ping` (PostgreSQL): a round trip on every
    checkout to find connections the server dropped; the store does without (a
    batch on a dropped connection is tried again, core/groupcommit.py)."""
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=20,
        )
        _configure_sqlite(engine, busy_timeout_ms=0 if poll_for_lock else 30_000)
        _WRITE_LOCKS[engine] = threading.RLock()
        return engine
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=20,
        pool_pre_ping=pre_ping,
    )


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" below decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers never wait for the writer. synchronous=FULL: a commit is on
        # disk before we acknowledge it (a click's 302, a webhook's 200).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A unit of work (see `transaction`) takes the write lock up front with
        # IMMEDIATE: a deferred transaction that reads and then writes can fail with
        # "database is locked" whatever the timeout, because SQLite cannot upgrade
        # its lock while another writer waits. Reads stay deferred, so under WAL
        # they never wait for a writer (a long job, a click batch).
        if connection.get_execution_options().get(WRITE_OPTION):
            _begin_immediate(connection.connection.driver_connection)
        else:
            connection.exec_driver_sql("BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work that writes: commit on success, roll back on any exception.
    For reads, use a plain `factory()` session."""
    with write_lock(factory.kw.get("bind")), factory() as session, session.begin():
        session.connection(execution_options={WRITE_OPTION: True})
        yield session


# SQLite has one writer at a time, and a connection that finds the database
# locked polls for it, sleeping 1, 2, 5, 10 ... up to 100 ms between tries. The
# writers of one process (click writer, webhooks, the in-process worker) queue
# on a lock instead and go the moment it is free; other processes still poll.
# Kept per engine, weakly: an engine's lock goes with the engine.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def write_lock(engine: Any) -> AbstractContextManager[Any]:
    """The process's write lock for this engine (SQLite), or nothing to wait for."""
    lock = _WRITE_LOCKS.get(engine) if isinstance(engine, Engine) else None
    return lock if lock is not None else nullcontext()


def run_atomically(driver: Any, dialect: Dialect, statements: Sequence[tuple[str, Any]]) -> None:
    """Run (SQL text, parameters) statements in one transaction straight on a
    driver connection: for the hottest write (the click store), where
    SQLAlchemy's work per statement cost more than the database's. On SQLite the
    write lock is taken up front (BEGIN IMMEDIATE, see _configure_sqlite); on
    PostgreSQL the statements and the commit go in one round trip (a pipeline)."""
    if dialect.name == "sqlite":
        _begin_immediate(driver)
        try:
            for sql, parameters in statements:
                driver.execute(sql, parameters)
            driver.execute("COMMIT")
        except BaseException:
            if driver.in_transaction:
                driver.execute("ROLLBACK")
            raise
        return
    try:
        with driver.pipeline(), driver.cursor() as cursor:
            for sql, parameters in statements:
                cursor.execute(sql, parameters)
            driver.commit()
    except BaseException:
        driver.rollback()
        raise


# How often a writer whose SQLite connection has busy_timeout=0 (the click store)
# tries again for the write lock another process holds, and for how long.
_BUSY_POLL_SECONDS = 0.0005
_BUSY_GIVE_UP_SECONDS = 30.0


def _begin_immediate(driver: Any) -> None:
    """BEGIN IMMEDIATE, polling every half millisecond while another process
    writes. SQLite's own wait sleeps 1, 2, 5 ... 100 ms between tries: a click
    batch finding the worker mid-transaction waited tens of milliseconds after
    the lock was free. Connections with a busy_timeout still wait inside SQLite
    first."""
    deadline = time.monotonic() + _BUSY_GIVE_UP_SECONDS
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(_BUSY_POLL_SECONDS)


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_if_absent(
    session: Session,
    table: Table,
    values: Mapping[str, Any],
    *,
    conflict_columns: Sequence[str],
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING. True if this call inserted the row.

    Idempotency as a schema fact: two concurrent callers with the same key get
    one row, and exactly one of them learns it was first. Empty
    `conflict_columns`: a clash on any unique constraint skips the insert.
    """
    statement = _insert_if_absent_statement(
        session.get_bind().dialect.name, table, tuple(conflict_columns)
    )
    # The values as parameters, not in the statement: one statement object per
    # table serves every call (building one per call, with its values inside,
    # cost about half a millisecond of SQLAlchemy work each, a few per order).
    return session.execute(statement, dict(values)).first() is not None


@lru_cache(maxsize=128)
def _insert_if_absent_statement(
    dialect: str, table: Table, conflict_columns: tuple[str, ...]
) -> Any:
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_nothing(index_elements=list(conflict_columns) or None).returning(
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        *table.primary_key.columns
    )


def upsert_add_statements(
    dialect: Dialect,
    table: Table,
    *,
    key: Sequence[str],
    counters: Sequence[str],
    rows: Sequence[Sequence[Any]],
    since: str | None = None,
) -> list[tuple[str, Any]]:
    """Statements (SQL text, parameters) that insert each row, or add its
    counters to the stored row with the same key, atomically (rollup counters).
    A row is the values of `key`, then of `since` if given, then `counters`, in
    that order, written in the order given: on SQLite multi-row VALUES
    statements, on PostgreSQL one INSERT ... SELECT FROM unnest(...) of a column
    array each (one round trip, whatever the number of rows). The caller runs
    them in its transaction.

    `since` names a column holding the first day a stored row counts from: a
    row adds to a stored one only if its value there is not earlier (a day the
    stored row does not count is left out of it), and a new row starts at its
    own value.

    Two rows with the same key in one call are refused by PostgreSQL (a command
    cannot update a row twice): callers add them up first."""
    if not rows:
        return []
    sql, processors = _upsert_add_sql(dialect, table, tuple(key), tuple(counters), since)
    if dialect.name == "postgresql":
        columns = list(zip(*rows, strict=True))
        return [(sql, {f"c{index}": list(values) for index, values in enumerate(columns)})]
    # SQLite: multi-row VALUES, not an executemany. The driver lets go of the GIL
    # for every statement it steps, and in a busy server each retake waits for
    # the event loop's thread; one statement for many rows takes it once.
    flat = [
        value if process is None else process(value)
        for row in rows
        for value, process in zip(row, processors, strict=True)
    ]
    width = len(key) + (since is not None) + len(counters)
    found: list[tuple[str, Any]] = []
    start, left = 0, len(rows)
    while left:
        chunk = min(1 << (left.bit_length() - 1), _MAX_UPSERT_ROWS)
        chunk_sql = _sqlite_rows(sql, width, chunk)
        found.append((chunk_sql, tuple(flat[start * width : (start + chunk) * width])))
        start += chunk
        left -= chunk
    return found


# 256 rows of the widest rollup (13 columns) are 3,328 parameters, far below SQLite's limit.
_MAX_UPSERT_ROWS = 256


@lru_cache(maxsize=256)
def _sqlite_rows(sql: str, width: int, rows: int) -> str:
    """The one-row upsert with `rows` rows of placeholders (counts are powers of
    two, so a handful of texts stay in the driver's statement cache)."""
    one = "(" + ", ".join("?" for _ in range(width)) + ")"
    return sql.replace(f"VALUES {one}", "VALUES " + ", ".join([one] * rows), 1)


# The SQL text is made once per (dialect, table, columns) and sent as it is:
# building an insert-on-conflict statement and binding each row through
# SQLAlchemy cost more Python time than the database spends on the write.
@lru_cache(maxsize=64)
def _upsert_add_sql(
    dialect: Dialect,
    table: Table,
    key: tuple[str, ...],
    counters: tuple[str, ...],
    since: str | None,
) -> tuple[str, tuple[Any, ...]]:
    quote = dialect.identifier_preparer.quote
    names = (*key, *((since,) if since is not None else ()), *counters)
    columns = ", ".join(quote(name) for name in names)
    target = dialect.identifier_preparer.format_table(table)
    updates = ", ".join(
        f"{quote(name)} = {target}.{quote(name)} + excluded.{quote(name)}" for name in counters
    )
    if dialect.name == "postgresql":
        arrays = ", ".join(
            f"%(c{index})s::{table.c[name].type.compile(dialect)}[]"
            for index, name in enumerate(names)
        )
        source = f"SELECT * FROM unnest({arrays})"  # noqa: S608 - names from the schema
        processors: tuple[Any, ...] = ()
    else:
        source = f"VALUES ({', '.join('?' for _ in names)})"
        # SQLite stores what SQLAlchemy's types make of a value (a date as text).
        processors = tuple(
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        )
    sql = (
        f"INSERT INTO {target} ({columns}) {source} "
        f"ON CONFLICT ({', '.join(quote(name) for name in key)}) DO UPDATE SET {updates}"
    )
    if since is not None:
        sql += f" WHERE excluded.{quote(since)} >= {target}.{quote(since)}"
    return sql, processors
