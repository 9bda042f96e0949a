"""CRM sync: customers from new orders to a HubSpot-shaped API, batched (one call
for up to 100 contacts, the delivery engine's default) against one call per
contact, side by side in one run.

HubSpot's published limit for private apps (100 calls per 10 s) is applied as
in production (the connector's token bucket), so one call per contact is capped
near 10 contacts a second once the burst is spent; batching is what lifts that.

For each variant: a fresh embedded (SQLite) instance in a temporary directory, a
program with a HubSpot connector pointed at a local stub that answers every
`batch/upsert` the way HubSpot documents (results with ids), N orders of N
different customers recorded first, then one worker drains the queue. Measured:
wall time of the drain, contacts per second, HTTP calls, and the engine's own
sync latency (event -> acceptance, p50/p95 from `GET /api/v1/sync/stats`'s
query). Checked: every customer reached the stub exactly as often as it has
orders (once), every message delivered, none dead.

    .venv/bin/python benchmarks/crm_sync.py --customers 2000 --latency-ms 30 --rounds 2

`--latency-ms` is the stub's answer time per call (HubSpot's own is tens of
milliseconds): batching saves calls, so it matters more the slower the CRM.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from partnerloop.cli import initialise
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.settings import Settings
from partnerloop.integrations import connectors
from partnerloop.integrations.registry import DELIVERY_KINDS, OUTBOUND
from partnerloop.orders import service as orders
from partnerloop.programs import service as programs
from partnerloop.runtime import build_runtime
from partnerloop.sync import service as sync
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Batched


class HubSpotStub:
    """Answers POST /crm/v3/objects/contacts/batch/upsert like HubSpot (200, one
    result per input with an id), after `latency` seconds; counts what it got."""

    def __init__(self, latency: float) -> None:
        self.calls = 0
        self.contacts: Counter[str] = Counter()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                time.sleep(latency)
                results = []
                with lock:
                    outer.calls += 1
                    for item in body["inputs"]:
                        outer.contacts[item["id"]] += 1
                        results.append(
                            {"id": str(len(outer.contacts)), "properties": {"email": item["id"]}}
                        )
                answer = json.dumps({"status": "COMPLETE", "results": results}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


TIMEOUT_SECONDS = 900.0


def delivered(runtime: Any, connector_id: str) -> int:
    with runtime.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.destination_id == connector_id,
                    OutboxMessage.state == "delivered",
                )
            )
            or 0
        )


def run_variant(customers: int, batch_size: int, latency: float) -> dict[str, Any]:
    stub = HubSpotStub(latency)
    with tempfile.TemporaryDirectory(prefix="pl-crm-bench-") as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            database_url=f"sqlite:///{Path(data_dir) / 'partnerloop.db'}",
            worker_in_process=False,
        )
        initialise(settings)
        runtime = build_runtime(settings)
        try:
            now = utcnow()
            with transaction(runtime.sessions) as session:
                program = programs.create(
                    session,
                    name="bench",
                    currency="EUR",
                    cookie_days=30,
                    allowed_domains=["shop.example.com"],
                    commission_type="percentage",
                    commission_value="10",
                    hold_days=30,
                    now=now,
                ).program
                connector = connectors.create(
                    session,
                    runtime.cipher,
                    shop=OUTBOUND["hubspot"],
                    program_id=program.id,
                    settings={"api_base_url": stub.url},
                    secret=None,
                    credentials={"access_token": "pat-bench"},
                    now=now,
                )
                connector_id = connector.id
            for start in range(0, customers, 500):  # orders recorded first, 500 a transaction
                with transaction(runtime.sessions) as session:
                    for n in range(start, min(start + 500, customers)):
                        orders.record_conversion(
                            session,
                            runtime.cipher,
                            orders.OrderInput(
                                program_id=program.id,
                                order_id=f"bench-{n}",
                                amount_minor=1999,
                                currency="EUR",
                                source="api",
                                customer_email=f"c{n:06}@example.com",
                            ),
                            now=utcnow(),
                        )
            registry = runtime.registry()
            registry = dataclasses.replace(
                registry,
                batched={
                    kind: Batched(entry.deliver, size=batch_size)
                    for kind, entry in registry.batched.items()
                },
                background=(),
            )
            worker = runtime.make_worker(registry=registry)
            started = time.perf_counter()
            # Until every contact is delivered: calls deferred by HubSpot's published
            # rate limit (the token bucket) are due again a moment later.
            while delivered(runtime, connector_id) < customers:
                if worker.run_once() == 0:
                    time.sleep(0.02)
                if time.perf_counter() - started > TIMEOUT_SECONDS:
                    break
            seconds = time.perf_counter() - started
            with runtime.sessions() as session:
                [stats] = [
                    s
                    for s in sync.destination_stats(
                        session, kinds=list(DELIVERY_KINDS), program_id=None, now=utcnow()
                    )
                    if s.destination_id == connector_id
                ]
        finally:
            runtime.close()
    stub.stop()
    once = all(count == 1 for count in stub.contacts.values())
    return {
        "batch": batch_size,
        "seconds": seconds,
        "contacts_per_s": customers / seconds,
        "calls": stub.calls,
        "p50_ms": stats.latency_p50_ms,
        "p95_ms": stats.latency_p95_ms,
        "delivered": stats.delivered,
        "dead": stats.dead,
        "check": "ok"
        if once and len(stub.contacts) == customers and stats.delivered == customers
        else "FAILED",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows: dict[int, list[dict[str, Any]]] = {1: [], 100: []}
    for round_number in range(args.rounds):
        order = (100, 1) if round_number % 2 == 0 else (1, 100)  # interleaved
        for size in order:
            result = run_variant(args.customers, size, args.latency_ms / 1000)
            rows[size].append(result)
            print(json.dumps({"round": round_number + 1, **result}), flush=True)
    print()
    print("| contacts per call | drain s | contacts/s | vs 1 per call | HTTP calls | "
          "sync p50 ms | sync p95 ms | check |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    base = statistics.median(r["contacts_per_s"] for r in rows[1])
    for size in (1, 100):
        runs = rows[size]
        rate = statistics.median(r["contacts_per_s"] for r in runs)
        print(
            f"| {size} | {statistics.median(r['seconds'] for r in runs):.2f} | {rate:,.0f} | "
            f"{rate / base:.1f}x | {statistics.median(r['calls'] for r in runs):,.0f} | "
            f"{statistics.median(r['p50_ms'] or 0 for r in runs):,.0f} | "
            f"{statistics.median(r['p95_ms'] or 0 for r in runs):,.0f} | "
            f"{'ok' if all(r['check'] == 'ok' for r in runs) else 'FAILED'} |"
        )


if __name__ == "__main__":
    main()
