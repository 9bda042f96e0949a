"""Dashboard and weekly-report queries at 10k, 1M and 10M clicks: does their cost
stay flat as one program's traffic grows?

For each backend (embedded SQLite in a temporary directory; PostgreSQL in
throw-away schemas, skipped if unreachable) and each scale, a database of its
own with:

1. `partnerloop init`, one program and the same `--affiliates` (1,000)
   affiliates at every scale: one program growing its traffic, not more
   programs or more affiliates;
2. `--scales` click rows really inserted into `clicks` (executemany of tuples
   on SQLite, COPY on PostgreSQL, in big transactions), over the last 365
   days, Zipf-like over the affiliates (affiliate k gets 1/k^1.1), 80 % unique,
   with an encrypted IP and a browser user agent;
3. the rollups written through `analytics.add_many` (the write path's own
   function), one RollupAdd per affiliate and day with its clicks, unique
   clicks and (about 3 % of unique clicks) conversions, revenue and
   commissions by state, oldest day first; then the recent window moved to
   today's 30 days (`analytics.recent.roll`, the worker's daily task);
4. checks, to the unit: the rollups against a full scan of `clicks` (clicks and
   unique clicks per affiliate and per day) and, for conversions, revenue and
   commissions, against a scan of the finest rollup (`daily_stats`): the
   dashboard's series and every row of its affiliate table for 30 and 365
   days and the weekly report's totals.

Then, in one run, `--rounds` interleaved rounds (each round times every scale
once, so drift on this shared machine hits all scales alike) of the queries
behind the pages, in-process with a fresh session each:

- dashboard, 30 days (the default) and 365 days: the per-day series (KPIs are
  its sum) and the first page (25) of the top-affiliates table by revenue;
- weekly report: the last complete ISO week against the week before, and its
  top 10 affiliates;
- "before": the same dashboard figures the way issue 5 read them (grouping
  `daily_stats` rows by day and by affiliate), for comparison.

It prints p50 / p95 ms per scale and the 10M / 10k ratio (target: at most 2).

With --writes, instead: the cost of writing rollups, per batch of 1, 20 and
200 (affiliate, day) increments like a click batch's, in one transaction
each, interleaved rounds on an empty database: the issue-5 way (one upsert
built per call, daily_stats only), `analytics.add` once per row, and one
`analytics.add_many` per batch (both writing all three rollup tables).

    .venv/bin/python benchmarks/rollups.py                               # both backends
    .venv/bin/python benchmarks/rollups.py --backends sqlite --scales 10000,1000000
    .venv/bin/python benchmarks/rollups.py --writes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time as clock
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

PG_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CLICK_BATCH = 200_000
ROLLUP_BATCH = 20_000
PAGE = 25  # the dashboard's affiliate page
TOP = 10  # the weekly report's top affiliates
CLICK_COLUMNS = (
    "id",
    "program_id",
    "link_id",
    "affiliate_id",
    "created_at",
    "ip_enc",
    "user_agent",
    "device",
    "browser",
    "os",
    "is_bot",
    "is_unique",
    "referrer",
    "landing_url",
)


def log(message: str) -> None:
    print(f"[{clock.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- one database per scale ---------------------------------------------------------------


@dataclass
class Scale:
    backend: str
    clicks: int
    workdir: Path
    env: dict[str, str]
    runtime: Any = None
    program_id: str = ""
    build_seconds: float = 0.0
    rollup_seconds: float = 0.0
    rollup_adds: int = 0
    table_rows: dict[str, int] = field(default_factory=dict)
    db_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)


@contextlib.contextmanager
def databases(
    backend: str, scales: list[int], args: argparse.Namespace, root: Path
) -> Iterator[list[Scale]]:
    """A fresh data dir (and on PostgreSQL a schema) per scale, dropped at the end."""
    admin = None
    schemas: list[str] = []
    made: list[Scale] = []
    try:
        if backend == "postgresql":
            admin = create_engine(
                args.pg_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
            )
            with admin.connect() as connection:
                connection.execute(text("SELECT 1"))
        for clicks in scales:
            workdir = root / f"{backend}-{clicks}"
            workdir.mkdir()
            env = {"PARTNERLOOP_DATA_DIR": str(workdir), "PARTNERLOOP_WORKER_IN_PROCESS": "false"}
            if admin is not None:
                schema = f"pl_rollups_{os.getpid()}_{clicks}_{secrets.token_hex(3)}"
                with admin.connect() as connection:
                    connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                schemas.append(schema)
                env["PARTNERLOOP_DATABASE_URL"] = f"{args.pg_url}?options=-csearch_path%3D{schema}"
            made.append(Scale(backend, clicks, workdir, env))
        yield made
    finally:
        for scale in made:
            if scale.runtime is not None:
                scale.runtime.close()
            shutil.rmtree(scale.workdir, ignore_errors=True)
        if admin is not None:
            with admin.connect() as connection:
                for schema in schemas:
                    connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


def build(scale: Scale, *, affiliates: int, seed: int) -> None:
    from partnerloop.affiliates import service as affiliates_service
    from partnerloop.cli import initialise
    from partnerloop.core.clock import utcnow
    from partnerloop.core.db import transaction
    from partnerloop.core.ids import new_id
    from partnerloop.core.settings import Settings
    from partnerloop.programs import service as programs
    from partnerloop.runtime import build_runtime
    from partnerloop.tracking.service import IP_FIELD

    started = clock.perf_counter()
    initialise(Settings.from_env(scale.env))
    runtime = scale.runtime = build_runtime(Settings.from_env(scale.env))
    rng = random.Random(seed)
    now = utcnow()
    today = now.date()
    with transaction(runtime.sessions) as session:
        scale.program_id = programs.create(
            session,
            name="Benchmark shop",
            currency="EUR",
            cookie_days=30,
            allowed_domains=["shop.example.com"],
            commission_type="percentage",
            commission_value="10",
            hold_days=30,
            now=now - timedelta(days=400),
        ).program.id
        affiliate_ids = [
            affiliates_service.sign_up(
                session,
                runtime.cipher,
                program_id=scale.program_id,
                email=f"partner{n:05}@bench.example",
                name=f"Partner {n:05}",
                now=now,
            ).affiliate.id
            for n in range(affiliates)
        ]
    link_ids = [new_id("link") for _ in affiliate_ids]
    cumulative = []
    total = 0.0
    for k in range(affiliates):
        total += 1 / (k + 1) ** 1.1
        cumulative.append(total)
    ips = [
        runtime.cipher.encrypt(f"198.51.{n // 250}.{n % 250}", field=IP_FIELD) for n in range(500)
    ]
    # Timestamps as the text SQLAlchemy stores for a UTCDateTime (naive UTC), made
    # once per day: per-row datetime arithmetic would dominate 10M rows.
    day_texts = [(today - timedelta(days=offset)).isoformat() for offset in range(365)]
    tally: dict[tuple[int, int], list[int]] = {}
    inserted = 0
    while inserted < scale.clicks:
        size = min(CLICK_BATCH, scale.clicks - inserted)
        chosen = rng.choices(range(affiliates), cum_weights=cumulative, k=size)
        rows = []
        for index in chosen:
            offset = rng.randrange(365)
            second = rng.randrange(86400 if offset else max(1, now.hour * 3600))
            unique = rng.random() < 0.8
            rows.append(
                (
                    new_id("click"),
                    scale.program_id,
                    link_ids[index],
                    affiliate_ids[index],
                    f"{day_texts[offset]} {second // 3600:02d}:{second // 60 % 60:02d}:"
                    f"{second % 60:02d}.000000",
                    ips[index % len(ips)],
                    BROWSER_UA,
                    "desktop",
                    "Chrome",
                    "Windows",
                    False,
                    unique,
                    "https://blog.example/post",
                    "https://shop.example.com/",
                )
            )
            counts = tally.get((index, offset))
            if counts is None:
                tally[(index, offset)] = [1, int(unique)]
            else:
                counts[0] += 1
                counts[1] += unique
        insert_clicks(runtime, rows)
        inserted += size
        if inserted % 1_000_000 == 0 or inserted == scale.clicks:
            log(
                f"{scale.backend} {scale.clicks:,}: {inserted:,} clicks ({clock.perf_counter() - started:.0f} s)"
            )

    # The rollups, through the write path's own function, a transaction per batch.
    from partnerloop.analytics import service as analytics

    adds = []
    # In the order the days happened (oldest first), as a live install writes them.
    for (index, offset), (day_clicks, unique) in sorted(
        tally.items(), key=lambda item: (-item[0][1], item[0][0])
    ):
        conversions = sum(1 for _ in range(unique) if rng.random() < 0.03)
        revenue = sum(rng.randrange(1500, 25000) for _ in range(conversions))
        increments = {
            "clicks": day_clicks,
            "unique_clicks": unique,
            "conversions": conversions,
            "revenue_minor": revenue,
        }
        if revenue:
            state = (
                "pending"
                if offset < 30
                else rng.choice(["approved", "paid", "paid", "reversed", "declined"])
            )
            increments[f"commission_{state}_minor"] = revenue // 10
        adds.append(
            analytics.RollupAdd(
                scale.program_id,
                affiliate_ids[index],
                today - timedelta(days=offset),
                increments,
            )
        )
    rollup_started = clock.perf_counter()
    for start in range(0, len(adds), ROLLUP_BATCH):
        with transaction(runtime.sessions) as session:
            analytics.add_many(session, adds[start : start + ROLLUP_BATCH])
    scale.rollup_seconds = clock.perf_counter() - rollup_started
    scale.rollup_adds = len(adds)
    # The worker's daily move of the recent window (its periodic task), to today's.
    from partnerloop.analytics import recent

    with transaction(runtime.sessions) as session:
        recent.roll(session, first_day=recent.window_first_day(today))
    if not runtime.settings.is_sqlite:
        with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    with runtime.engine.connect() as connection:
        for table in (
            "clicks",
            "daily_stats",
            "program_daily_stats",
            "period_stats",
            "recent_stats",
        ):
            scale.table_rows[table] = int(
                connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            )
        if runtime.settings.is_sqlite:
            scale.db_bytes = sum(p.stat().st_size for p in scale.workdir.glob("*.db*"))
        else:
            scale.db_bytes = int(
                connection.execute(
                    text(
                        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                    )
                ).scalar_one()
            )
    scale.build_seconds = clock.perf_counter() - started
    log(
        f"{scale.backend} {scale.clicks:,}: built in {scale.build_seconds:.0f} s "
        f"(add_many of {len(adds):,} rows {scale.rollup_seconds:.1f} s), "
        f"{scale.db_bytes / 2**20:,.0f} MiB"
    )


def insert_clicks(runtime: Any, rows: list[tuple[Any, ...]]) -> None:
    """executemany of plain tuples on SQLite, COPY on PostgreSQL: one transaction."""
    raw = runtime.engine.raw_connection()
    try:
        driver = raw.driver_connection
        if runtime.settings.is_sqlite:
            marks = ", ".join("?" * len(CLICK_COLUMNS))
            driver.execute("BEGIN")
            driver.executemany(
                f"INSERT INTO clicks ({', '.join(CLICK_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                rows,
            )
            driver.execute("COMMIT")
        else:
            statement = f"COPY clicks ({', '.join(CLICK_COLUMNS)}) FROM STDIN"
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
            driver.commit()
    finally:
        raw.close()


# --- the queries --------------------------------------------------------------------------


def periods(today: date) -> dict[str, Any]:
    from partnerloop.analytics.dashboard import Period
    from partnerloop.analytics.report import last_complete_week

    return {
        "30 days": Period(today - timedelta(days=29), today),
        "365 days": Period(today - timedelta(days=364), today),
        "week": last_complete_week(today),
    }


def dashboard_figures(session: Any, program_id: str, period: Any) -> Any:
    from partnerloop.analytics import dashboard

    days = dashboard.daily(session, program_id=program_id, period=period)
    top = dashboard.top_affiliates(
        session, program_id=program_id, period=period, sort="revenue", limit=PAGE
    )
    return dashboard.totals(days), top


def report_figures(session: Any, program_id: str, week: Any) -> Any:
    from partnerloop.analytics import dashboard
    from partnerloop.analytics.report import compare

    figures = compare(session, program_id=program_id, week=week)
    top = dashboard.top_affiliates(
        session, program_id=program_id, period=week.period, sort="revenue", limit=TOP
    )
    return figures, top


def before_figures(session: Any, program_id: str, period: Any) -> Any:
    """The dashboard's two queries as issue 5 made them: group the period's
    daily_stats rows by day, and by affiliate."""
    from partnerloop.analytics.models import FIGURES, DailyStats

    sums = [func.sum(getattr(DailyStats, name)) for name in FIGURES]
    where = [
        DailyStats.program_id == program_id,
        DailyStats.day >= period.first,
        DailyStats.day <= period.last,
    ]
    series = session.execute(
        select(DailyStats.day, *sums).where(*where).group_by(DailyStats.day)
    ).all()
    top = session.execute(
        select(DailyStats.affiliate_id, *sums)
        .where(*where, DailyStats.affiliate_id != "")
        .group_by(DailyStats.affiliate_id)
        .order_by(sums[3].desc(), DailyStats.affiliate_id)
        .limit(PAGE + 1)
    ).all()
    return series, top


def queries(today: date) -> dict[str, Callable[[Any, str], Any]]:
    chosen = periods(today)
    return {
        "dashboard 30 days": lambda s, p: dashboard_figures(s, p, chosen["30 days"]),
        "dashboard 365 days": lambda s, p: dashboard_figures(s, p, chosen["365 days"]),
        "weekly report": lambda s, p: report_figures(s, p, chosen["week"]),
        "before: dashboard 30 days": lambda s, p: before_figures(s, p, chosen["30 days"]),
        "before: dashboard 365 days": lambda s, p: before_figures(s, p, chosen["365 days"]),
    }


def measure(scales: list[Scale], *, rounds: int, warmup: int, today: date) -> None:
    named = queries(today)
    for round_number in range(warmup + rounds):
        for name, query in named.items():
            for scale in scales:
                with scale.runtime.sessions() as session:
                    started = clock.perf_counter()
                    query(session, scale.program_id)
                    elapsed = (clock.perf_counter() - started) * 1000
                if round_number >= warmup:
                    scale.timings.setdefault(name, []).append(elapsed)


# --- checks, to the unit ------------------------------------------------------------------


def check(scale: Scale, today: date) -> None:
    """The figures the pages show against full scans of the facts."""
    from partnerloop.analytics import dashboard, service
    from partnerloop.analytics.models import FIGURES, DailyStats

    program_id = scale.program_id
    problems = scale.problems
    sqlite = scale.runtime.settings.is_sqlite
    click_day = "date(created_at)" if sqlite else "CAST(created_at AS date)"
    with scale.runtime.sessions() as session:
        scanned = session.execute(
            text(
                f"SELECT affiliate_id, {click_day} AS day, count(*), "  # noqa: S608
                "sum(CASE WHEN is_unique THEN 1 ELSE 0 END) FROM clicks "
                "WHERE program_id = :p GROUP BY affiliate_id, day"
            ),
            {"p": program_id},
        ).all()
        clicks_of = {(a, date.fromisoformat(str(d))): (int(c), int(u)) for a, d, c, u in scanned}
        if sum(c for c, _ in clicks_of.values()) != scale.clicks:
            problems.append(
                f"clicks scan {sum(c for c, _ in clicks_of.values())} != {scale.clicks}"
            )
        daily_rows = {
            (r[0], r[1]): [int(v) for v in r[2:]]
            for r in session.execute(
                select(
                    DailyStats.affiliate_id,
                    DailyStats.day,
                    *(getattr(DailyStats, name) for name in FIGURES),
                ).where(DailyStats.program_id == program_id)
            )
        }
        for label, period in periods(today).items():
            period = period.period if label == "week" else period
            in_period = [
                (key, row)
                for key, row in daily_rows.items()
                if period.first <= key[1] <= period.last
            ]
            per_affiliate: dict[str, list[int]] = {}
            per_day: dict[date, list[int]] = {}
            for (affiliate_id, day), row in in_period:
                fact = clicks_of.get((affiliate_id, day), (0, 0))
                expected = [fact[0], fact[1], *row[2:]]
                if row[:2] != list(fact):
                    problems.append(
                        f"daily_stats clicks of {affiliate_id} on {day}: {row[:2]} != {fact}"
                    )
                for into, key in ((per_affiliate, affiliate_id), (per_day, day)):
                    into[key] = [
                        a + b
                        for a, b in zip(into.get(key, [0] * len(FIGURES)), expected, strict=True)
                    ]
            missing = {key for key in clicks_of if period.first <= key[1] <= period.last} - {
                key for key, _ in in_period
            }
            if missing:
                problems.append(f"{len(missing)} affiliate-days with clicks have no rollup row")
            series = dashboard.daily(session, program_id=program_id, period=period)
            for one in series:
                if _row(one.stats) != per_day.get(one.day, [0] * len(FIGURES)):
                    problems.append(f"{label}: series on {one.day} differs from the scan")
            table = dashboard.top_affiliates(
                session, program_id=program_id, period=period, sort="revenue", limit=100_000
            )
            got = {row.affiliate_id: _row(row.stats) for row in table.rows}
            want = {key: value for key, value in per_affiliate.items() if any(value)}
            if got != want:
                wrong = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
                problems.append(f"{label}: {len(wrong)} affiliate rows differ from the scan")
            total = service.stats(
                session,
                program_id=program_id,
                affiliate_id=None,
                day_from=period.first,
                day_to=period.last,
            )
            scan_total = [sum(v[i] for v in per_day.values()) for i in range(len(FIGURES))]
            if _row(total) != scan_total:
                problems.append(f"{label}: program totals differ from the scan")
    log(f"{scale.backend} {scale.clicks:,}: checks {'ok' if not problems else problems[:3]}")


def _row(stats: Any) -> list[int]:
    from partnerloop.analytics.service import COMMISSION_STATES

    return [
        stats.clicks,
        stats.unique_clicks,
        stats.conversions,
        stats.revenue_minor,
        *(stats.commissions_minor[state] for state in COMMISSION_STATES),
    ]


# --- write cost ---------------------------------------------------------------------------


def issue5_add(session: Any, row: Any) -> None:
    """analytics.add as issue 5 had it: the upsert built on every call, one table."""
    from sqlalchemy.dialects import postgresql, sqlite

    from partnerloop.analytics.models import DailyStats
    from partnerloop.core.db import is_postgresql

    table = DailyStats.__table__
    insert = postgresql.insert if is_postgresql(session) else sqlite.insert
    changes = {name: value for name, value in row.increments.items() if value}
    key = {"program_id": row.program_id, "affiliate_id": row.affiliate_id or "", "day": row.day}
    statement = insert(table).values(**key, **changes)
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: table.c[name] + statement.excluded[name] for name in changes},
    )
    session.execute(statement)


def measure_writes(backend: str, args: argparse.Namespace, root: Path) -> list[str]:
    from partnerloop.analytics import service as analytics
    from partnerloop.cli import initialise
    from partnerloop.core.clock import utcnow
    from partnerloop.core.db import transaction
    from partnerloop.core.settings import Settings
    from partnerloop.runtime import build_runtime

    ways: dict[str, Callable[[Any, list[Any]], None]] = {
        "issue 5: add per row (daily_stats only)": lambda s, rows: [issue5_add(s, r) for r in rows],
        "add per row (all rollups)": lambda s, rows: [
            analytics.add(
                s,
                program_id=r.program_id,
                affiliate_id=r.affiliate_id,
                day=r.day,
                increments=r.increments,
            )
            for r in rows
        ],
        "add_many per batch (all rollups)": lambda s, rows: analytics.add_many(s, rows),
    }
    lines = []
    with databases(backend, [0], args, root) as (scale,):
        initialise(Settings.from_env(scale.env))
        runtime = scale.runtime = build_runtime(Settings.from_env(scale.env))
        rng = random.Random(args.seed)
        today = utcnow().date()
        timings: dict[tuple[str, int], list[float]] = {}
        for round_number in range(args.warmup + args.rounds):
            for size in (1, 20, 200):
                for way, write in ways.items():
                    rows = [
                        analytics.RollupAdd(
                            "prg_bench",
                            f"aff_{rng.randrange(args.affiliates)}",
                            today - timedelta(days=rng.randrange(2)),
                            {"clicks": rng.randrange(1, 4), "unique_clicks": 1},
                        )
                        for _ in range(size)
                    ]
                    # One (affiliate, day) per row, as the click writer sends them.
                    rows = list({(r.affiliate_id, r.day): r for r in rows}.values())
                    with transaction(runtime.sessions) as session:
                        started = clock.perf_counter()
                        write(session, rows)
                        session.flush()
                        elapsed = (clock.perf_counter() - started) * 1000
                    if round_number >= args.warmup:
                        timings.setdefault((way, size), []).append(elapsed / len(rows))
        lines += [
            f"### {backend}: rollup writes, ms per (affiliate, day) row, p50 of {args.rounds} rounds",
            "",
            "| way | batch of 1 | batch of 20 | batch of 200 |",
            "|---|---:|---:|---:|",
        ]
        for way in ways:
            lines.append(
                f"| {way} | "
                + " | ".join(f"{p50(timings[(way, size)]):.3f}" for size in (1, 20, 200))
                + " |"
            )
        lines.append("")
    return lines


# --- report -------------------------------------------------------------------------------


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95 + 0.999) - 1)]


def report(results: dict[str, list[Scale]], args: argparse.Namespace) -> str:
    lines = [
        f"In-process query time, {args.rounds} interleaved rounds after {args.warmup} warm-up, "
        f"{args.affiliates:,} affiliates at every scale",
        "",
    ]
    for backend, scales in results.items():
        lines += [
            f"### {backend}",
            "",
            "| scale (clicks) | clicks rows | daily_stats | program_daily_stats | period_stats | recent_stats | DB MiB | build s | add_many rows / s | check |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for scale in scales:
            rows = scale.table_rows
            lines.append(
                f"| {scale.clicks:,} | {rows['clicks']:,} | {rows['daily_stats']:,} | "
                f"{rows['program_daily_stats']:,} | {rows['period_stats']:,} | "
                f"{rows['recent_stats']:,} | "
                f"{scale.db_bytes / 2**20:,.0f} | {scale.build_seconds:.0f} | "
                f"{scale.rollup_adds:,} / {scale.rollup_seconds:.1f} | "
                f"{'ok' if not scale.problems else 'FAILED: ' + '; '.join(scale.problems[:3])} |"
            )
        lines += [
            "",
            "| query | "
            + " | ".join(f"{s.clicks:,} p50 / p95 ms" for s in scales)
            + f" | ratio {scales[-1].clicks:,} / {scales[0].clicks:,} (p50) |",
            "|---|" + "---:|" * (len(scales) + 1),
        ]
        for name in scales[0].timings:
            cells = [f"{p50(s.timings[name]):.1f} / {p95(s.timings[name]):.1f}" for s in scales]
            ratio = p50(scales[-1].timings[name]) / p50(scales[0].timings[name])
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f} |")
        lines.append("")
    return "\n".join(lines)


def as_json(results: dict[str, list[Scale]]) -> str:
    return json.dumps(
        {
            backend: [
                {
                    "clicks": s.clicks,
                    "table_rows": s.table_rows,
                    "db_bytes": s.db_bytes,
                    "build_seconds": round(s.build_seconds, 1),
                    "rollup_adds": s.rollup_adds,
                    "rollup_seconds": round(s.rollup_seconds, 2),
                    "problems": s.problems,
                    "p50_ms": {k: round(p50(v), 2) for k, v in s.timings.items()},
                    "p95_ms": {k: round(p95(v), 2) for k, v in s.timings.items()},
                }
                for s in scales
            ]
            for backend, scales in results.items()
        },
        indent=2,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scales", default="10000,1000000,10000000", help="click counts, comma-separated"
    )
    parser.add_argument("--affiliates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("PARTNERLOOP_TEST_PG", PG_URL_DEFAULT))
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument(
        "--writes", action="store_true", help="measure the cost of rollup writes instead"
    )
    parser.add_argument(
        "--tmp", type=Path, default=None, help="where the databases go (default: system temp)"
    )
    return parser.parse_args()


def main() -> None:
    from partnerloop.core.clock import utcnow

    args = parse_args()
    scales = sorted(int(value) for value in args.scales.split(","))
    results: dict[str, list[Scale]] = {}
    if args.writes:
        lines: list[str] = []
        with tempfile.TemporaryDirectory(prefix="pl-rollups-bench-", dir=args.tmp) as root:
            for backend in (name.strip() for name in args.backends.split(",")):
                lines += measure_writes(backend, args, Path(root))
        print("\n".join(lines))
        return
    with tempfile.TemporaryDirectory(prefix="pl-rollups-bench-", dir=args.tmp) as root:
        for backend in (name.strip() for name in args.backends.split(",")):
            try:
                with databases(backend, scales, args, Path(root)) as made:
                    for scale in made:
                        log(f"{backend}: building {scale.clicks:,} clicks")
                        build(scale, affiliates=args.affiliates, seed=args.seed)
                    today = utcnow().date()
                    for scale in made:
                        check(scale, today)
                    log(f"{backend}: measuring, {args.rounds} rounds")
                    measure(made, rounds=args.rounds, warmup=args.warmup, today=today)
                    results[backend] = made
            except Exception as error:
                if backend == "postgresql" and "connect" in str(error).lower():
                    log(f"PostgreSQL not reachable, skipped: {type(error).__name__}: {error}")
                    continue
                raise
    print(report(results, args))
    if args.json:
        args.json.write_text(as_json(results))
    if any(scale.problems for scales_ in results.values() for scale in scales_):
        sys.exit(1)


if __name__ == "__main__":
    main()
