"""What one order costs the worker: CPU time and SQL statements per order.

Builds the same instance as `ingest.py` (a program paying 10 %, affiliates with
links and coupons, seeded clicks, a Shopify connector, a webhook endpoint at a
local sink), stores `--orders` signed Shopify deliveries through the real
webhook endpoint (in process; no worker runs meanwhile), then drains them with
one worker in this process and reports, per order: the worker's CPU time
(`time.process_time`, this process only; the database server's share on
PostgreSQL is not in it), wall time, SQL statements sent and commits. Then it
runs `ingest.py`'s checks (one conversion per order, commissions exact, every
outgoing webhook delivered once).

    .venv/bin/python benchmarks/worker_cost.py [--orders 300] [--backend sqlite|postgresql]
        [--profile FILE.pstats]

For comparing a change: run it before and after on the same machine, side by
side; the per-order CPU figure is steady to a few percent on a quiet machine.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest


def post_all(instance: ingest.Instance, orders: ingest.OrderSet) -> int:
    """Every delivery in the requests file through the app's webhook endpoint."""
    from starlette.testclient import TestClient

    from partnerloop.web.app import create_app

    app = create_app(instance.runtime, run_worker=False)
    accepted = 0
    # One event loop for every request (the app's link to its store lives on it).
    with TestClient(app, base_url=instance.runtime.settings.public_url) as client:
        for headers, body in ingest.deliveries(orders):
            response = client.post(f"/hooks/{instance.connector_id}", content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text}")
            accepted += 1
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=ingest.PG_URL_DEFAULT)
    parser.add_argument("--attributed", type=float, default=0.6)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the drain here")
    parser.add_argument(
        "--by-statement",
        type=int,
        default=0,
        metavar="N",
        help="also print the N most frequent statements (their first 110 characters) per order",
    )
    args = parser.parse_args()

    from sqlalchemy import event

    workdir = Path(tempfile.mkdtemp(prefix="pl-worker-cost-"))
    orders = ingest.generate(
        args.orders, attributed=args.attributed, workdir=workdir, seed=f"wc{time.time_ns()}"
    )
    sink = ingest.Sink()
    instance = ingest.prepare(args.backend, orders, sink.url, pg_url=args.pg_url, workdir=workdir)
    if instance is None:
        raise SystemExit("PostgreSQL is not reachable")
    try:
        n_posted = post_all(instance, orders)
        statements: Counter[str] = Counter()
        texts: Counter[str] = Counter()

        def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            statements[statement.split(None, 1)[0].upper()] += 1
            texts[" ".join(statement.split())[:110]] += 1

        def commit(conn: Any) -> None:
            statements["COMMIT"] += 1

        engine = instance.runtime.engine
        event.listen(engine, "before_cursor_execute", count)
        event.listen(engine, "commit", commit)
        worker = instance.runtime.make_worker()
        profiler = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        worker.drain()
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "commit", commit)
        load = ingest.Load(
            requests=n_posted,
            seconds=1.0,
            p50_ms=0.0,
            p99_ms=0.0,
            accepted=n_posted,
            duplicate=0,
            other=0,
            wrapped=0,
            errors=0,
        )
        checked = ingest.check(instance, orders, load, sink, connections=0)
        n = args.orders
        print(
            f"{args.backend}: {n} orders drained in {wall:.2f} s; "
            f"worker CPU {cpu / n * 1000:.2f} ms/order, wall {wall / n * 1000:.2f} ms/order; "
            f"{sum(v for k, v in statements.items() if k != 'COMMIT') / n:.1f} statements/order "
            f"({', '.join(f'{k} {v / n:.1f}' for k, v in statements.most_common())}); "
            f"checks: {'; '.join(checked['problems']) or 'ok'}"
        )
        for text, times in texts.most_common(args.by_statement):
            print(f"  {times / n:5.2f}  {text}")
        if checked["problems"]:
            raise SystemExit(1)
    finally:
        sink.stop()
        instance.close()


if __name__ == "__main__":
    main()
