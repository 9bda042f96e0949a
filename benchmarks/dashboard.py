"""The admin dashboard of a program with 1,000,000 clicks, over real HTTP.

For each backend (embedded SQLite in a temporary directory; PostgreSQL in a
throw-away schema, skipped if unreachable):

1. `partnerloop init`, a program, 1,000 affiliates (signed up through the
   affiliates service: encrypted names), a link each, a webhook and a HubSpot
   connector;
2. 1,000,000 click rows really inserted into `clicks` (executemany on SQLite,
   COPY on PostgreSQL), spread over the last 365 days and over the affiliates
   Zipf-like (a few big ones, a long tail), 80 % unique, with encrypted IPs
   and browser user agents like the redirect writes them;
3. the rollups written the way writes maintain them: `analytics.add_many`
   (what the click writer and the order and commission services call), one
   RollupAdd per program, affiliate and day, with those days' clicks, unique
   clicks and (about 3 % of unique clicks) conversions, revenue and
   commissions by state;
4. sync history for the two connectors: 60,000 delivered outbox messages each
   with their delivery attempts (1,000 of them in the last 7 days, some 5xx),
   a backlog and dead letters; on PostgreSQL then ANALYZE (what autovacuum
   does after a bulk load);
5. a uvicorn server in a process of its own (the real app, `create_app`, no
   in-process worker) and a staff owner signed in through /admin/login;
6. GET /admin?program=... (the default 30 days) and the same for the last 365
   days, `--requests` times each after a warm-up, one at a time, timed at the
   client; the page's click KPI is checked against the rows inserted.

    .venv/bin/python benchmarks/dashboard.py                      # both backends
    .venv/bin/python benchmarks/dashboard.py --clicks 100000 --backends sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time as clock
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Table, create_engine, func, insert, select, text

PG_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "benchmark password 1"  # noqa: S105 (a throw-away staff account)
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BATCH = 50_000


def log(message: str) -> None:
    print(f"[{clock.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the server, in a process of its own --------------------------------------------------


def serve(port: int) -> None:
    import uvicorn

    from partnerloop.core import logs
    from partnerloop.core.settings import Settings
    from partnerloop.runtime import build_runtime
    from partnerloop.web.app import create_app

    settings = Settings.from_env()  # PARTNERLOOP_* set by the parent
    logs.configure(settings.log_level)
    uvicorn.run(
        create_app(build_runtime(settings), run_worker=False),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_level="warning",
        access_log=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process(env: dict[str, str], workdir: Path) -> Iterator[str]:
    port = free_port()
    log_path = workdir / "server.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "PARTNERLOOP_LOG_LEVEL": "warning"},
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = clock.monotonic() + 60
        while True:
            if process.poll() is not None or clock.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1.0).status_code < 500:
                    break
            clock.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- data ---------------------------------------------------------------------------------


def bulk_insert(runtime: Any, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Many rows at once: COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if runtime.settings.is_sqlite:
        with runtime.engine.begin() as connection:
            connection.execute(insert(table), rows)
        return
    columns = list(rows[0])
    raw = runtime.engine.raw_connection()
    try:
        driver = raw.driver_connection
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                # UTCDateTime stores naive UTC (see partnerloop.core.db).
                copy.write_row(
                    [
                        v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
                        for v in (row[c] for c in columns)
                    ]
                )
        driver.commit()
    finally:
        raw.close()


@dataclass
class Made:
    program_id: str
    clicks: int
    rollup_rows: int
    outbox_rows: int
    attempt_rows: int
    seconds: float


def build(runtime: Any, *, clicks: int, affiliates: int, seed: int) -> Made:
    from partnerloop.affiliates import service as affiliates_service
    from partnerloop.analytics import service as analytics
    from partnerloop.analytics.models import DailyStats
    from partnerloop.core.clock import day_of, utcnow
    from partnerloop.core.db import transaction
    from partnerloop.core.ids import new_id
    from partnerloop.integrations import connectors
    from partnerloop.integrations.registry import OUTBOUND
    from partnerloop.programs import service as programs
    from partnerloop.sync.models import DeliveryAttempt, OutboxMessage
    from partnerloop.tracking.models import Click, Link
    from partnerloop.tracking.service import IP_FIELD

    started = clock.perf_counter()
    rng = random.Random(seed)
    now = utcnow()
    today = now.date()
    with transaction(runtime.sessions) as session:
        program = programs.create(
            session,
            name="Benchmark shop",
            currency="EUR",
            cookie_days=30,
            allowed_domains=["shop.example.com"],
            commission_type="percentage",
            commission_value="10",
            hold_days=30,
            now=now - timedelta(days=400),
        ).program
        program_id = program.id
        affiliate_ids = [
            affiliates_service.sign_up(
                session,
                runtime.cipher,
                program_id=program_id,
                email=f"partner{n:05}@bench.example",
                name=f"Partner {n:05}",
                now=now,
            ).affiliate.id
            for n in range(affiliates)
        ]
        hooks = [
            connectors.create(
                session,
                runtime.cipher,
                shop=OUTBOUND[kind],
                program_id=program_id,
                settings=settings,
                secret=None,
                credentials=credentials,
                now=now,
            ).id
            for kind, settings, credentials in (
                ("webhook", {"url": "http://127.0.0.1:9/hook"}, {}),
                ("hubspot", {"api_base_url": "http://127.0.0.1:9"}, {"access_token": "x"}),
            )
        ]
    link_ids = [new_id("link") for _ in affiliate_ids]
    bulk_insert(
        runtime,
        Link.__table__,  # type: ignore[arg-type]
        [
            {
                "id": link_id,
                "program_id": program_id,
                "affiliate_id": affiliate_id,
                "code": secrets.token_urlsafe(8),
                "destination_url": "https://shop.example.com/",
                "created_at": now,
            }
            for link_id, affiliate_id in zip(link_ids, affiliate_ids, strict=True)
        ],
    )
    log(
        f"program, {affiliates} affiliates, links and 2 connectors: {clock.perf_counter() - started:.0f} s"
    )

    # Zipf-like shares: affiliate k gets 1/k^1.1 of the traffic.
    weights = [1 / (k + 1) ** 1.1 for k in range(affiliates)]
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    ips = [
        runtime.cipher.encrypt(f"198.51.{n // 250}.{n % 250}", field=IP_FIELD) for n in range(2000)
    ]
    tally: dict[tuple[int, date], list[int]] = {}
    inserted = 0
    while inserted < clicks:
        size = min(BATCH, clicks - inserted)
        chosen = rng.choices(range(affiliates), cum_weights=cumulative, k=size)
        rows = []
        for index in chosen:
            day = today - timedelta(days=rng.randrange(365))
            moment = datetime.combine(day, time(0), UTC) + timedelta(seconds=rng.uniform(0, 86399))
            moment = min(moment, now)
            unique = rng.random() < 0.8
            rows.append(
                {
                    "id": new_id("click"),
                    "program_id": program_id,
                    "link_id": link_ids[index],
                    "affiliate_id": affiliate_ids[index],
                    "created_at": moment,
                    "ip_enc": ips[rng.randrange(len(ips))],
                    "user_agent": BROWSER_UA,
                    "device": "desktop",
                    "browser": "Chrome",
                    "os": "Windows",
                    "is_bot": False,
                    "is_unique": unique,
                    "referrer": "https://blog.example/post",
                    "landing_url": "https://shop.example.com/",
                }
            )
            counts = tally.setdefault((index, day_of(moment)), [0, 0])
            counts[0] += 1
            counts[1] += int(unique)
        bulk_insert(runtime, Click.__table__, rows)  # type: ignore[arg-type]
        inserted += size
        log(f"clicks: {inserted:,} ({clock.perf_counter() - started:.0f} s)")

    # The rollups, through the write path's own function (analytics.add_many:
    # daily_stats, program_daily_stats and period_stats), a transaction per batch.
    adds = []
    for (index, day), (day_clicks, unique) in sorted(tally.items(), key=lambda item: item[0][1]):
        conversions = sum(1 for _ in range(unique) if rng.random() < 0.03)
        revenue = sum(rng.randrange(1500, 25000) for _ in range(conversions))
        increments = {
            "clicks": day_clicks,
            "unique_clicks": unique,
            "conversions": conversions,
            "revenue_minor": revenue,
        }
        if revenue:
            age = (today - day).days
            state = (
                "pending"
                if age < 30
                else rng.choice(["approved", "paid", "paid", "reversed", "declined"])
            )
            increments[f"commission_{state}_minor"] = revenue // 10
        adds.append(analytics.RollupAdd(program_id, affiliate_ids[index], day, increments))
    for start in range(0, len(adds), 20_000):
        with transaction(runtime.sessions) as session:
            analytics.add_many(session, adds[start : start + 20_000])
    log(f"rollup: {len(tally):,} rows ({clock.perf_counter() - started:.0f} s)")

    # Sync history: per connector 60,000 delivered messages over the year (1,000 in
    # the last 7 days), one attempt each, some answered 5xx first; a backlog; dead letters.
    outbox_rows = attempt_rows = 0
    for hook, kind in zip(hooks, ("webhook", "hubspot"), strict=True):
        messages: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        for n in range(60_000):
            age = (
                timedelta(days=rng.uniform(7, 365))
                if n >= 1000
                else timedelta(days=rng.uniform(0, 7))
            )
            occurred = now - age
            delivered = occurred + timedelta(milliseconds=rng.uniform(200, 4000))
            message_id = new_id("outbox_message")
            messages.append(
                _message(message_id, kind, hook, program_id, occurred, "delivered", delivered)
            )
            if rng.random() < 0.02:
                attempts.append(_attempt(kind, hook, message_id, occurred, 503, "retry", 1))
            attempts.append(_attempt(kind, hook, message_id, delivered, 200, "delivered", 1))
        for n in range(40):
            messages.append(
                _message(
                    new_id("outbox_message"),
                    kind,
                    hook,
                    program_id,
                    now,
                    "pending" if n % 2 else "retry",
                    None,
                )
            )
        for _ in range(7):
            messages.append(
                _message(
                    new_id("outbox_message"),
                    kind,
                    hook,
                    program_id,
                    now - timedelta(days=2),
                    "dead",
                    None,
                )
            )
        bulk_insert(runtime, OutboxMessage.__table__, messages)  # type: ignore[arg-type]
        bulk_insert(runtime, DeliveryAttempt.__table__, attempts)  # type: ignore[arg-type]
        outbox_rows += len(messages)
        attempt_rows += len(attempts)
    if not runtime.settings.is_sqlite:
        with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    with runtime.sessions() as session:
        rollup_rows = int(
            session.scalar(
                select(func.count())
                .select_from(DailyStats)
                .where(DailyStats.program_id == program_id)
            )
            or 0
        )
        stored = int(session.scalar(select(func.count()).select_from(Click)) or 0)
    log(f"sync history: {outbox_rows:,} outbox messages, {attempt_rows:,} attempts")
    return Made(
        program_id, stored, rollup_rows, outbox_rows, attempt_rows, clock.perf_counter() - started
    )


def _message(
    message_id: str,
    kind: str,
    hook: str,
    program_id: str,
    occurred: datetime,
    state: str,
    delivered: datetime | None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "destination_kind": kind,
        "destination_id": hook,
        "topic": "conversion.created",
        "idempotency_key": message_id,
        "program_id": program_id,
        "payload_enc": "x" * 200,  # the size of an encrypted event
        "state": state,
        "attempts": 1 if delivered or state != "pending" else 0,
        "next_attempt_at": occurred,
        "created_at": occurred,
        "occurred_at": occurred,
        "delivered_at": delivered,
        "last_error": None if state in ("delivered", "pending") else "503 Service Unavailable",
    }


def _attempt(
    kind: str, hook: str, message_id: str, at: datetime, status: int, outcome: str, attempt: int
) -> dict[str, Any]:
    from partnerloop.core.ids import new_id

    return {
        "id": new_id("delivery_attempt"),
        "message_id": message_id,
        "destination_kind": kind,
        "destination_id": hook,
        "attempt": attempt,
        "started_at": at - timedelta(milliseconds=120),
        "duration_ms": 120,
        "status_code": status,
        "outcome": outcome,
        "error": None if status < 500 else "503 Service Unavailable",
    }


# --- measuring ----------------------------------------------------------------------------


def sign_in(runtime: Any, base: str) -> httpx.Client:
    from partnerloop.access import staff
    from partnerloop.core.clock import utcnow
    from partnerloop.core.db import transaction

    email = f"owner-{secrets.token_hex(3)}@bench.example"
    with transaction(runtime.sessions) as session:
        staff.create(
            session,
            runtime.cipher,
            staff.NewStaff(email=email, role="owner", password=PASSWORD),
            now=utcnow(),
        )
    client = httpx.Client(base_url=base, timeout=60.0, follow_redirects=False)
    form = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]*)"', form.text)
    assert token, form.text
    done = client.post(
        "/admin/login", data={"email": email, "password": PASSWORD, "csrf": token.group(1)}
    )
    assert done.status_code == 303, done.text
    return client


def timed(
    client: httpx.Client, params: dict[str, str], requests: int, warmup: int
) -> dict[str, Any]:
    timings = []
    page = ""
    for n in range(warmup + requests):
        started = clock.perf_counter()
        response = client.get("/admin", params=params)
        elapsed = (clock.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET /admin answered {response.status_code}: {response.text[:500]}")
        page = response.text
        if n >= warmup:
            timings.append(elapsed)
    timings.sort()
    clicks = re.search(r'data-kpi="clicks">([^<]*)<', page)
    return {
        "p50": statistics.median(timings),
        "p95": timings[max(0, int(len(timings) * 0.95 + 0.999) - 1)],
        "max": timings[-1],
        "bytes": len(page.encode()),
        "clicks_kpi": clicks.group(1) if clicks else "?",
    }


def run_backend(name: str, args: argparse.Namespace) -> dict[str, Any] | None:
    from partnerloop.cli import initialise
    from partnerloop.core.clock import utcnow
    from partnerloop.core.settings import Settings
    from partnerloop.runtime import build_runtime

    admin = None
    schema = None
    with tempfile.TemporaryDirectory(prefix="pl-dashboard-bench-") as workdir:
        env = {"PARTNERLOOP_DATA_DIR": workdir, "PARTNERLOOP_WORKER_IN_PROCESS": "false"}
        if name == "postgresql":
            schema = f"pl_bench_{os.getpid()}_{secrets.token_hex(3)}"
            try:
                admin = create_engine(
                    args.pg_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
                )
                with admin.connect() as connection:
                    connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            except Exception as error:
                log(f"PostgreSQL not reachable, skipped: {type(error).__name__}: {error}")
                return None
            env["PARTNERLOOP_DATABASE_URL"] = f"{args.pg_url}?options=-csearch_path%3D{schema}"
        try:
            settings = Settings.from_env(env)
            initialise(settings)
            runtime = build_runtime(Settings.from_env(env))
            try:
                log(f"{name}: building {args.clicks:,} clicks")
                made = build(
                    runtime, clicks=args.clicks, affiliates=args.affiliates, seed=args.seed
                )
                today = utcnow().date()
                with (
                    server_process(env, Path(workdir)) as base,
                    contextlib.closing(sign_in(runtime, base)) as client,
                ):
                    default = timed(
                        client, {"program": made.program_id}, args.requests, args.warmup
                    )
                    year = timed(
                        client,
                        {
                            "program": made.program_id,
                            "from": (today - timedelta(days=364)).isoformat(),
                            "to": today.isoformat(),
                        },
                        args.requests,
                        args.warmup,
                    )
            finally:
                runtime.close()
        finally:
            if admin is not None:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                admin.dispose()
    expected = f"{made.clicks:,}"
    return {
        "backend": name,
        "made": made,
        "default": default,
        "year": year,
        "check": "ok"
        if year["clicks_kpi"] == expected and made.clicks == args.clicks
        else (f"FAILED: 365-day clicks KPI {year['clicks_kpi']}, rows {made.clicks:,}"),
    }


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"GET /admin, {args.requests} requests each after {args.warmup} warm-up, one at a time",
        "",
        "| backend | clicks rows | rollup rows | outbox / attempts | period | p50 ms | p95 ms | max ms | page KB | check |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        made = result["made"]
        for label, key in (("30 days (default)", "default"), ("365 days", "year")):
            figures = result[key]
            lines.append(
                f"| {result['backend']} | {made.clicks:,} | {made.rollup_rows:,} | "
                f"{made.outbox_rows:,} / {made.attempt_rows:,} | {label} | {figures['p50']:.1f} | "
                f"{figures['p95']:.1f} | {figures['max']:.1f} | {figures['bytes'] / 1024:.0f} | "
                f"{result['check']} |"
            )
    lines.append("")
    lines.append(
        "data build: " + ", ".join(f"{r['backend']} {r['made'].seconds:.0f} s" for r in results)
    )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--affiliates", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("PARTNERLOOP_TEST_PG", PG_URL_DEFAULT))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve:
        serve(args.port)
        return
    results = []
    for name in args.backends.split(","):
        result = run_backend(name.strip(), args)
        if result is not None:
            results.append(result)
    print(report(results, args))
    if any(result["check"] != "ok" for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
