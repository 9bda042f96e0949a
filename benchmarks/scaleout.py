"""Scale-out on PostgreSQL: one backlog of N Shopify order events (and the outbox
work they cause: fan-out, outgoing webhooks to a local sink) drained by 1 and by 2
`partnerloop worker` processes, in interleaved rounds, each on a fresh schema.

Printed: drain time, orders/s, the ratio 2 workers / 1 worker per round.
Checked (the same checks as ingest.py): every event processed once (claimed
once: attempts = 1), one conversion per order, commissions count and sum as
expected, every fan-out and webhook message delivered, the sink got every
webhook id exactly once.

    .venv/bin/python benchmarks/scaleout.py [--orders 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest


def backlog(instance: ingest.Instance, orders: ingest.OrderSet) -> int:
    """Every order into the inbox, as the webhook path stores them (one statement a batch)."""
    from partnerloop.core.clock import utcnow
    from partnerloop.core.db import transaction
    from partnerloop.integrations import connectors
    from partnerloop.sync import service as sync

    events = []
    for headers, body in ingest.deliveries(orders):
        events.append(
            sync.NewEvent(
                kind=connectors.INBOUND_KIND,
                source=connectors.source_of(instance.connector_id),
                external_id=headers["X-Shopify-Event-Id"],
                topic="orders/create",
                payload=body,
                program_id=instance.program_id,
            )
        )
    for start in range(0, len(events), 500):
        with transaction(instance.runtime.sessions) as session:
            sync.store_events(
                session, instance.runtime.cipher, events[start : start + 500], now=utcnow()
            )
    return len(events)


def run(
    workers: int,
    args: argparse.Namespace,
    orders: ingest.OrderSet,
    sink: ingest.Sink,
    workdir: Path,
) -> dict[str, Any]:
    sink.reset()
    instance = ingest.prepare("postgresql", orders, sink.url, pg_url=args.pg_url, workdir=workdir)
    if instance is None:
        raise SystemExit("PostgreSQL is not reachable")
    procs: list[ingest.Proc] = []
    try:
        stored = backlog(instance, orders)
        env = dict(instance.env, PARTNERLOOP_WORKER_POLL_SECONDS="0.05")
        for n in range(workers):
            procs.append(
                ingest.start(f"worker-{workers}-{n}", [ingest.PARTNERLOOP, "worker"], env, workdir)
            )
        seconds = ingest.wait_drained(instance.runtime, procs)
        time.sleep(0.5)  # the sink's last answers
        load = ingest.Load(stored, 1.0, 0, 0, stored, 0, 0, 0, 0)
        result = ingest.check(instance, orders, load, sink, 0)
        with instance.runtime.engine.connect() as db:
            from sqlalchemy import text

            claimed_twice = db.execute(
                text("SELECT count(*) FROM inbound_events WHERE attempts <> 1")
            ).scalar_one()
        if claimed_twice:
            result["problems"].append(f"{claimed_twice} events claimed more than once")
    finally:
        for proc in procs:
            ingest.stop(proc)
        instance.close()
    return {
        "workers": workers,
        "seconds": seconds,
        "orders_per_s": stored / seconds,
        "startup_included": True,
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--attributed", type=float, default=0.6)
    parser.add_argument("--pg-url", default=ingest.PG_URL_DEFAULT)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sink = ingest.Sink()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pl-scaleout-") as tmp:
        workdir = Path(tmp)
        orders = ingest.generate(args.orders, attributed=args.attributed, workdir=workdir, seed="s")
        try:
            for rnd in range(1, args.rounds + 1):
                for workers in (1, 2) if rnd % 2 else (2, 1):  # interleaved
                    row = {"round": rnd, **run(workers, args, orders, sink, workdir)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            sink.stop()
    print()
    print(
        "| round | workers | drain s | orders/s | vs 1 worker (same round) | conversions | commissions | check |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    one = {r["round"]: r["orders_per_s"] for r in rows if r["workers"] == 1}
    for r in rows:
        print(
            f"| {r['round']} | {r['workers']} | {r['seconds']:.1f} | {r['orders_per_s']:,.0f} | "
            f"{r['orders_per_s'] / one[r['round']]:.2f} | {r['conversions']} | {r['commissions']} | "
            f"{'ok' if not r['problems'] else '; '.join(r['problems'])} |"
        )
    ratios = [r["orders_per_s"] / one[r["round"]] for r in rows if r["workers"] == 2]
    print(
        f"\n2 workers / 1 worker: median {statistics.median(ratios):.2f} over {len(ratios)} round(s)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if any(r["problems"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
