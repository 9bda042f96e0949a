"""core.bulk.BulkInsert: rows straight to the driver store what an ORM insert stores,
on SQLite (multi-row VALUES) and PostgreSQL (one array per column, unnest)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError

from partnerloop.core.bulk import BulkInsert
from partnerloop.core.db import UTCDateTime
from partnerloop.runtime import Runtime

METADATA = MetaData()
ROWS = Table(
    "bulk_insert_test_rows",
    METADATA,
    Column("id", String(32), primary_key=True),
    Column("name", String(64)),
    Column("body", Text),
    Column("n", Integer),
    Column("flag", Boolean),
    Column("at", UTCDateTime),
    Column("gone", UTCDateTime),
    UniqueConstraint("name"),
)
T0 = datetime(2026, 11, 25, 3, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def table(runtime: Runtime) -> Iterator[Table]:
    METADATA.create_all(runtime.engine)
    try:
        yield ROWS
    finally:
        METADATA.drop_all(runtime.engine)


def _row(k: int) -> tuple[object, ...]:
    # Text with quotes, commas, braces and backslashes (array literal syntax), None,
    # a large int, both booleans, aware datetimes that must come back as UTC.
    body = None if k % 7 == 0 else f'{{"k": {k}, "q": "a\\"b,c"}}' + "x" * (k % 50) + "\\"
    return (
        f"row{k:05d}",
        f"name-{k}",
        body,
        k * 1_000_003,
        k % 2 == 0,
        T0 + timedelta(seconds=k),
        None,
    )


def _stored(runtime: Runtime) -> list[tuple[object, ...]]:
    with runtime.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(select(ROWS).order_by(ROWS.c.id))]


def test_rows_come_back_as_an_orm_insert_stores_them(runtime: Runtime, table: Table) -> None:
    bulk = BulkInsert(table)
    rows = [_row(k) for k in range(1, 700)]  # above one SQLite statement's 512 rows
    with runtime.engine.begin() as connection:
        dialect = connection.dialect
        for sql, params in bulk.statements(dialect, bulk.prepare(dialect, rows)):
            connection.exec_driver_sql(sql, params)
        # The same values through SQLAlchemy's own insert, for comparison.
        connection.execute(insert(table), [dict(zip(bulk.columns, _row(0), strict=True))])

    stored = _stored(runtime)
    assert stored == [_row(k) for k in range(0, 700)]


def test_a_suffix_skips_conflicts_and_returns_only_new_rows(runtime: Runtime, table: Table) -> None:
    bulk = BulkInsert(table, suffix="ON CONFLICT (name) DO NOTHING RETURNING id")
    with runtime.engine.begin() as connection:
        dialect = connection.dialect

        def put(rows: list[tuple[object, ...]]) -> set[str]:
            created: set[str] = set()
            for sql, params in bulk.statements(dialect, bulk.prepare(dialect, rows)):
                created.update(connection.exec_driver_sql(sql, params).scalars())
            return created

        assert put([_row(1), _row(2)]) == {"row00001", "row00002"}
        # row 2's name again under another id: skipped; row 3 is new.
        again = ("other", *_row(2)[1:])
        assert put([again, _row(3)]) == {"row00003"}

    assert [r[0] for r in _stored(runtime)] == ["row00001", "row00002", "row00003"]


def test_a_value_too_long_for_its_column_is_never_cut_short(runtime: Runtime, table: Table) -> None:
    # PostgreSQL refuses it, as a plain INSERT does; SQLite keeps lengths unenforced
    # and stores it whole. Either way nothing is stored shortened.
    bulk = BulkInsert(table)
    long_name = "n" * 65  # the column is String(64)
    row = ("row-long", long_name, None, 1, True, T0, None)
    try:
        with runtime.engine.begin() as connection:
            dialect = connection.dialect
            for sql, params in bulk.statements(dialect, bulk.prepare(dialect, [row])):
                connection.exec_driver_sql(sql, params)
    except DBAPIError:
        assert runtime.engine.dialect.name == "postgresql"
        assert _stored(runtime) == []
    else:
        assert runtime.engine.dialect.name == "sqlite"
        assert [r[1] for r in _stored(runtime)] == [long_name]
