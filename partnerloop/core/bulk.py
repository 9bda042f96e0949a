"""Many-row INSERTs at driver speed, for the hottest writes (the click batch).

SQLAlchemy's bulk insert costs several microseconds per row building cache
keys over the values; on the click path that was more than the click itself.
This hands rows (tuples in the table's column order) straight to the driver,
after the column types' own bind processors, so what is stored is exactly
what an ORM insert would store.

Rows go as multi-row INSERT ... VALUES (...), (...) statements, not an
executemany: SQLite's driver releases and retakes the GIL for every row of an
executemany, and in a busy server each retake waits for the event loop's
thread; one statement for many rows takes it once. Row counts are split into
powers of two so a handful of statement texts stay in the drivers' caches. On
PostgreSQL the rows go as one array per column (INSERT ... SELECT FROM unnest):
one short statement text for any number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Column, String, Table
from sqlalchemy.engine import Dialect

_Processor = Callable[[Any], Any]
# SQL text and its parameters, for the driver as they are (cursor.execute).
Statement = tuple[str, Any]

# 512 rows of a 20-column table are 10,240 parameters: under SQLite's limit
# (32,766) and PostgreSQL's (65,535).
MAX_ROWS_PER_STATEMENT = 512


class BulkInsert:
    def __init__(self, table: Table, *, suffix: str = "") -> None:
        """`suffix` follows the VALUES (the same on both dialects), e.g.
        "ON CONFLICT (a, b) DO NOTHING RETURNING id"."""
        self.table = table
        self.suffix = f" {suffix}" if suffix else ""
        self.columns = [column.name for column in table.columns]
        self._processors: dict[str, list[tuple[int, _Processor]]] = {}
        self._statements: dict[tuple[str, int], str] = {}

    def _sql(self, dialect: Dialect, rows: int) -> str:
        sql = self._statements.get((dialect.name, rows))
        if sql is None:
            marker = "?" if dialect.paramstyle == "qmark" else "%s"
            preparer = dialect.identifier_preparer
            names = ", ".join(preparer.quote(name) for name in self.columns)
            row = "(" + ", ".join([marker] * len(self.columns)) + ")"
            # Only the table's own quoted identifiers and placeholders: no values.
            table = preparer.format_table(self.table)
            values = ", ".join([row] * rows)
            sql = f"INSERT INTO {table} ({names}) VALUES {values}{self.suffix}"  # noqa: S608
            self._statements[(dialect.name, rows)] = sql
        return sql

    def _has_json(self) -> bool:
        # JSON values go to the driver wrapped for their own type: no plain arrays.
        return any(isinstance(column.type, JSON) for column in self.table.columns)

    def _processors_for(self, dialect: Dialect) -> list[tuple[int, _Processor]]:
        processors = self._processors.get(dialect.name)
        if processors is None:
            processors = self._processors[dialect.name] = [
                (position, processor)
                for position, column in enumerate(self.table.columns)
                if (processor := column.type.dialect_impl(dialect).bind_processor(dialect))
                is not None
            ]
        return processors

    def prepare(self, dialect: Dialect, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """The rows' values as the driver takes them (after the column types'
        bind processors), flat: what `statements` sends. Separate so a busy
        writer can prepare one batch while it commits another."""
        processors = self._processors_for(dialect)
        if not processors:
            return [value for row in rows for value in row]
        flat: list[Any] = []
        for row in rows:
            values = list(row)
            for position, processor in processors:
                values[position] = processor(values[position])
            flat.extend(values)
        return flat

    def _unnest_sql(self, dialect: Dialect) -> str:
        sql = self._statements.get((dialect.name, 0))
        if sql is None:
            preparer = dialect.identifier_preparer
            names = ", ".join(preparer.quote(name) for name in self.columns)
            arrays = ", ".join(
                f"%b::{_array_type(column, dialect)}[]" for column in self.table.columns
            )
            table = preparer.format_table(self.table)
            sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){self.suffix}"  # noqa: S608
            self._statements[(dialect.name, 0)] = sql
        return sql

    def statements(self, dialect: Dialect, flat: Sequence[Any]) -> list[Statement]:
        """INSERT statements (SQL text, parameters) for prepared values."""
        width = len(self.columns)
        if dialect.name == "postgresql" and flat and not self._has_json():
            # One array per column: a short statement with one parameter per column,
            # whatever the row count. psycopg caches the parsing of such a statement;
            # a multi-row VALUES text of thousands of placeholders it parses anew
            # every time (most of the insert's client-side cost).
            return [(self._unnest_sql(dialect), tuple(list(flat[c::width]) for c in range(width)))]
        found: list[Statement] = []
        start, left = 0, len(flat) // width
        while left:
            chunk = min(1 << (left.bit_length() - 1), MAX_ROWS_PER_STATEMENT)
            found.append(
                (self._sql(dialect, chunk), tuple(flat[start * width : (start + chunk) * width]))
            )
            start += chunk
            left -= chunk
        return found


def _array_type(column: Column[Any], dialect: Dialect) -> str:
    # Strings as text[]: an explicit cast to varchar(n) would cut a value that is
    # too long without a word; the insert's own assignment to the column refuses
    # it, as a VALUES insert does.
    if isinstance(column.type, String):
        return "text"
    return str(column.type.compile(dialect=dialect))
