"""Rollups maintained on write, and the stats read from them.

Every change that moves a figure (a click, a conversion, a refund, a
commission changing state) adds to its rollup rows in the same transaction as
the change itself, so the rollups and the facts cannot drift apart. One
change adds to seven rows: its program, affiliate and day (DailyStats); its
program and day (ProgramDailyStats); its program, affiliate and year, month,
quarter of a month and ISO week (PeriodStats); its program and affiliate's
recent window (RecentStats, if the day is in it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from sqlalchemy import Date, Select, Subquery, Table, bindparam, func, select, text, union_all
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from partnerloop.analytics import recent, spans
from partnerloop.analytics.models import FIGURES, DailyStats, PeriodStats, ProgramDailyStats
from partnerloop.core.db import is_postgresql, upsert_add_statements

COMMISSION_STATES = ("pending", "approved", "paid", "reversed", "declined")

_STATE_COLUMN = {state: f"commission_{state}_minor" for state in COMMISSION_STATES}
_SLOT = {name: index for index, name in enumerate(FIGURES)}


@dataclass(frozen=True, slots=True)
class RollupAdd:
    """Add `increments` (counter name -> amount, see models.FIGURES) to the
    figures of a program, affiliate (None or '': unattributed) and UTC day."""

    program_id: str
    affiliate_id: str | None
    day: date
    increments: Mapping[str, int]


def add_many(session: Session, rows: Sequence[RollupAdd]) -> None:
    """Apply a batch of increments to every rollup, in the caller's transaction:
    rows with the same key are added up first, then one upsert-add statement per
    table (four statements however many rows, one more per extra day an
    affiliate has in the batch; see core.db.upsert_add_statements and
    recent.statements). A zero net change writes nothing; an unknown figure
    raises ValueError before anything is written."""
    connection = session.connection()
    for sql, parameters in rollup_statements(connection.dialect, rows):
        connection.exec_driver_sql(sql, parameters)


def rollup_statements(dialect: Dialect, rows: Sequence[RollupAdd]) -> list[tuple[str, Any]]:
    """add_many's statements (SQL text, parameters), for a writer that sends
    them to the driver itself (the click store)."""
    daily: dict[tuple[str, date, str], list[int]] = {}
    program_daily: dict[tuple[str, date], list[int]] = {}
    period: dict[tuple[str, str, date, str], list[int]] = {}
    for row in rows:
        amounts = [0] * len(FIGURES)
        for name, value in row.increments.items():
            if name not in _SLOT:
                raise ValueError(f"unknown rollup figure {name!r}")
            amounts[_SLOT[name]] += value
        if not any(amounts):
            continue
        affiliate_id = row.affiliate_id or ""
        _accumulate(daily, (row.program_id, row.day, affiliate_id), amounts)
        _accumulate(program_daily, (row.program_id, row.day), amounts)
        for grain, first_day in spans.span_starts(row.day):
            _accumulate(period, (row.program_id, grain, first_day, affiliate_id), amounts)
    # Always the same order (the program's day row first, then keys sorted): two
    # transactions adding to the same rows take their locks in the same order
    # on PostgreSQL, so they queue instead of deadlocking.
    return [
        *_statements(dialect, ProgramDailyStats.__table__, ("program_id", "day"), program_daily),  # type: ignore[arg-type]
        *_statements(dialect, DailyStats.__table__, ("program_id", "day", "affiliate_id"), daily),  # type: ignore[arg-type]
        *_statements(
            dialect,
            PeriodStats.__table__,  # type: ignore[arg-type]
            ("program_id", "grain", "first_day", "affiliate_id"),
            period,
        ),
        *recent.statements(dialect, daily),
    ]


def _accumulate(into: dict[Any, list[int]], key: tuple[Any, ...], amounts: list[int]) -> None:
    total = into.get(key)
    if total is None:
        into[key] = list(amounts)
    else:
        for index, value in enumerate(amounts):
            total[index] += value


def _statements(
    dialect: Dialect,
    table: Table,
    key: tuple[str, ...],
    sums: Mapping[tuple[Any, ...], list[int]],
) -> list[tuple[str, Any]]:
    rows = [(*values, *amounts) for values, amounts in sorted(sums.items()) if any(amounts)]
    return upsert_add_statements(dialect, table, key=key, counters=FIGURES, rows=rows)


def add(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str | None,
    day: date,
    increments: Mapping[str, int],
) -> None:
    add_many(session, [RollupAdd(program_id, affiliate_id, day, increments)])


def commission_moved(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str,
    day: date,
    amount_minor: int,
    from_state: str | None,
    to_state: str,
) -> None:
    """Move an amount between commission-state buckets (None: a new commission)."""
    increments: dict[str, int] = {_STATE_COLUMN[to_state]: amount_minor}
    if from_state is not None:
        increments[_STATE_COLUMN[from_state]] = (
            increments.get(_STATE_COLUMN[from_state], 0) - amount_minor
        )
    add(session, program_id=program_id, affiliate_id=affiliate_id, day=day, increments=increments)


@dataclass(frozen=True)
class Stats:
    clicks: int
    unique_clicks: int
    conversions: int
    revenue_minor: int
    commissions_minor: dict[str, int]


def stats_of(values: Sequence[object]) -> Stats:
    """A row of FIGURES (None as 0) as Stats."""
    numbers = [int(value or 0) for value in values]  # type: ignore[call-overload]
    return Stats(
        clicks=numbers[0],
        unique_clicks=numbers[1],
        conversions=numbers[2],
        revenue_minor=numbers[3],
        commissions_minor=dict(zip(COMMISSION_STATES, numbers[4:], strict=True)),
    )


def stats(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str | None,
    day_from: date | None,
    day_to: date | None,
) -> Stats:
    """Totals of a program (affiliate_id None) or of one affiliate over a range
    of days (None: open on that side). A program reads one row per day; an
    affiliate a few spans and days (see spans.cover)."""
    if affiliate_id is None:
        query = select(*(func.sum(getattr(ProgramDailyStats, name)) for name in FIGURES)).where(
            ProgramDailyStats.program_id == program_id
        )
        if day_from is not None:
            query = query.where(ProgramDailyStats.day >= day_from)
        if day_to is not None:
            query = query.where(ProgramDailyStats.day <= day_to)
        return stats_of(session.execute(query).one())
    pieces = spans.cover(day_from, day_to)
    if not pieces:
        return stats_of([0] * len(FIGURES))
    without_parallel_workers(session)
    return stats_of(
        session.execute(
            _one_affiliate(shape_of(pieces)),
            {"program_id": program_id, "affiliate_id": affiliate_id, **bounds_of(pieces)},
        ).one()
    )


def without_parallel_workers(session: Session) -> None:
    """PostgreSQL: plan the rest of this transaction without parallel workers.

    A covering query reads a few thousand rollup rows, but the planner's
    estimate for a program's spans can pass the parallel threshold, and starting
    workers costs more than the query: measured on 2 cores, 1M clicks, the
    weekly report's affiliate table took 12 ms with 2 workers and 3 ms without.
    """
    if is_postgresql(session):
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


# A piece as the statement sees it: sign, grain, bounded below, bounded above.
Shape = tuple[tuple[int, str, bool, bool], ...]


def shape_of(pieces: spans.Cover) -> Shape:
    return tuple((p.sign, p.grain, p.first is not None, p.last is not None) for p in pieces)


def bounds_of(pieces: spans.Cover) -> dict[str, date]:
    """The parameters of covering_rows' statement for these pieces."""
    values: dict[str, date] = {}
    for index, piece in enumerate(pieces):
        if piece.first is not None:
            values[f"first_{index}"] = piece.first
        if piece.last is not None:
            values[f"last_{index}"] = piece.last
    return values


# Statements are built once per shape (a handful of shapes cover every period)
# with the program, affiliate and days as parameters: building a union of
# labelled selects costs more Python time than running it on a small program.
@lru_cache(maxsize=256)
def covering_rows(shape: Shape, *, one_affiliate: bool) -> Subquery:
    """A subquery (affiliate_id and FIGURES columns) of the rollup rows the
    pieces name, a taken-away piece's figures negated: summed per affiliate
    it gives the period's figures. Parameters: program_id, affiliate_id (with
    `one_affiliate`; otherwise every affiliate but ''), and bounds_of(pieces)."""
    selects: list[Select[Any]] = []
    for index, (sign, grain, bounded_below, bounded_above) in enumerate(shape):
        table: type[DailyStats] | type[PeriodStats]
        if grain == spans.DAY:
            table, first_day, conditions = DailyStats, DailyStats.day, []
        else:
            table, first_day = PeriodStats, PeriodStats.first_day
            conditions = [PeriodStats.grain == grain]
        conditions.append(table.program_id == bindparam("program_id"))
        conditions.append(
            table.affiliate_id == bindparam("affiliate_id")
            if one_affiliate
            # '' holds orders no affiliate earned: in the totals, not in the table.
            else table.affiliate_id != ""
        )
        if bounded_below:
            conditions.append(first_day >= bindparam(f"first_{index}", type_=Date()))
        if bounded_above:
            conditions.append(first_day <= bindparam(f"last_{index}", type_=Date()))
        columns = [
            (getattr(table, name) if sign > 0 else -getattr(table, name)).label(name)
            for name in FIGURES
        ]
        selects.append(select(table.affiliate_id, *columns).where(*conditions))
    if len(selects) == 1:
        return selects[0].subquery()
    return union_all(*selects).subquery()


@lru_cache(maxsize=256)
def _one_affiliate(shape: Shape) -> Select[Any]:
    rows_of = covering_rows(shape, one_affiliate=True)
    return select(*(func.sum(rows_of.c[name]) for name in FIGURES))
