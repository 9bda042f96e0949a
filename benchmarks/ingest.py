"""Order ingestion: signed Shopify `orders/create` webhooks at full rate, side by side
with a bare Starlette endpoint in one run.

Variants, each a server process of its own on 127.0.0.1 (uvicorn, 1 worker, the
same configuration `partnerloop serve` uses):

  R  a bare Starlette app: POST /hooks/{id} reads the body and answers 200 JSON
     (the reference every ratio refers to, measured in the same round)
  S  `partnerloop serve` on the embedded default SQLite, with its in-process worker
  P  `partnerloop serve` on PostgreSQL (throw-away schema) with
     `--pg-workers` separate `partnerloop worker` processes (skipped if unreachable)

Every request is a unique, correctly signed Shopify delivery of the docs example
order (../shared/fixtures/shopify, byte shape kept; id, customer, amount, times
and the click id or coupon changed per order): unique order ids, event ids and
webhook ids. A share of the orders carries one of our click ids (note attribute
`plclid`) or an affiliate's coupon, so attribution and commissions really run;
a webhook endpoint subscribed to every event points at a local sink, so each
order's outbox work really goes out.

Load generator: wrk, with a Lua script whose request() hands out raw requests
from a file generated beforehand (one per order, each signed in Python: HMAC in
Lua is impractical), so no request repeats unless the file is exhausted (then
the script says so; the server answers `duplicate`). Closed loop, `--connections`.

After each partnerloop run the script waits for the worker(s) to drain
everything, then checks (see README.md): inbox rows = webhooks answered
`accepted` (+ at most one in flight per connection), every one processed; one
conversion per stored order, no duplicate; commissions count and sum equal the
expected ones computed here from the orders sent (10 % of the subtotal, half to
even); outbox rows per order as expected (fan-out and webhook: 2 for an
attributed order, 1 otherwise), all delivered; the sink got every webhook id
exactly once.

With `--workers-after`, no worker runs during the load (the burst goes to the
inbox only) and the workers start when it ends: the accept path's own rate,
then the time to drain the burst.

    .venv/bin/python benchmarks/ingest.py [--duration 10] [--connections 32] [--rounds 2]
        [--workers-after]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
FIXTURE = (
    REPO.parent / "shared" / "fixtures" / "shopify" / "docs-example_2026-04_orders_create.json"
)
PARTNERLOOP = str(REPO / ".venv" / "bin" / "partnerloop")
PG_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "shpss_bench_secret"  # noqa: S105 (the benchmark shop's own test secret)
SHOP = "bench-shop.myshopify.com"
AFFILIATES = 20
MARK = "BENCHJSON "
CLK_TCK = os.sysconf("SC_CLK_TCK")
DRAIN_TIMEOUT_SECONDS = 900.0
VARIANTS = {
    "R": "bare Starlette POST -> 200 (reference)",
    "S": "partnerloop serve, SQLite, in-process worker",
    "P": "partnerloop serve, PostgreSQL, separate workers",
}
# With --workers-after: what ran during the load, and what drained after.
VARIANTS_AFTER = {
    "S": "partnerloop serve, SQLite, no worker during the load (1 worker process after)",
    "P": "partnerloop serve, PostgreSQL, no worker during the load (--pg-workers after)",
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The orders: one signed Shopify delivery each
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    order_id: str
    subtotal_minor: int
    affiliate: int | None  # index into the seeded affiliates, None: not attributed
    via: str  # click | coupon | none

    @property
    def commission_minor(self) -> int:
        # 10 % of the subtotal, half to even to the cent (the program's rule), written
        # out here independently of partnerloop's own rounding code.
        if self.affiliate is None:
            return 0
        exact = Decimal(self.subtotal_minor) * Decimal("0.10")
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def click_ids(count: int, seed: str) -> list[str]:
    # The shape partnerloop's ids have (prefix + 26 base32 characters, sortable).
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    out = []
    for n in range(count):
        digest = hashlib.sha256(f"{seed}:{n}".encode()).digest()
        out.append("clk_" + "".join(alphabet[b % 32] for b in digest[:26]))
    return out


def sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class OrderSet:
    orders: list[Order]
    clicks: list[tuple[str, int]]  # (click id, affiliate index) to seed
    path: Path  # the raw requests for wrk (without request line and Host)

    def by_id(self) -> dict[str, Order]:
        return {order.order_id: order for order in self.orders}


def generate(
    count: int, *, attributed: float, workdir: Path, seed: str, topic: str = "orders/create"
) -> OrderSet:
    """`count` unique signed deliveries; a share `attributed` carries a click id
    (two thirds of them) or a coupon (one third)."""
    template = json.loads(FIXTURE.read_text())["response"]
    now = datetime.now(UTC).replace(microsecond=0)
    placed = now.isoformat()
    clicks = click_ids(count, seed)
    orders: list[Order] = []
    seeded: list[tuple[str, int]] = []
    path = workdir / f"requests-{seed}.bin"
    base_id = 7_000_000_000_000 + int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16) * 10**5
    with path.open("wb") as out:
        for n in range(count):
            order = copy.copy(template)
            order_id = base_id + n
            subtotal = 1_000 + (n * 7919) % 49_000  # 10.00 .. 499.99
            slot = n % 100
            affiliate: int | None = None
            via = "none"
            order["note_attributes"] = []
            order["discount_codes"] = []
            if slot < attributed * 100:
                affiliate = n % AFFILIATES
                if slot % 3 == 2:
                    via = "coupon"
                    order["discount_codes"] = [
                        {"code": f"BENCH{affiliate}", "amount": "0.00", "type": "fixed_amount"}
                    ]
                else:
                    via = "click"
                    seeded.append((clicks[n], affiliate))
                    order["note_attributes"] = [{"name": "plclid", "value": clicks[n]}]
            customer = dict(template["customer"])
            customer.update(
                id=9_000_000_000 + order_id % 10**9, email=f"c{order_id}@buyers.example"
            )
            order.update(
                id=order_id,
                name=f"#B{n}",
                order_number=n + 1,
                email=customer["email"],
                contact_email=customer["email"],
                customer=customer,
                financial_status="paid",
                cancelled_at=None,
                cancel_reason=None,
                created_at=placed,
                processed_at=placed,
                updated_at=placed,
                subtotal_price=f"{subtotal // 100}.{subtotal % 100:02d}",
                total_price=f"{(subtotal + 1000) // 100}.{subtotal % 100:02d}",
            )
            body = json.dumps(order, separators=(",", ":")).encode()
            event = f"ev-{seed}-{n}"
            head = (
                f"X-Shopify-Topic: {topic}\r\n"
                f"X-Shopify-Hmac-Sha256: {sign(body)}\r\n"
                f"X-Shopify-Shop-Domain: {SHOP}\r\n"
                "X-Shopify-API-Version: 2026-04\r\n"
                f"X-Shopify-Event-Id: {event}\r\n"
                f"X-Shopify-Webhook-Id: wh-{event}\r\n"
                f"X-Shopify-Triggered-At: {placed}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            record = head + body
            out.write(f"{len(record)}\n".encode() + record)
            orders.append(Order(str(order_id), subtotal, affiliate, via))
    return OrderSet(orders, seeded, path)


def deliveries(orders: OrderSet) -> Iterator[tuple[dict[str, str], bytes]]:
    """The generated requests back as (headers, body), in order (for scripts that
    store or post them without wrk)."""
    data = orders.path.read_bytes()
    position = 0
    while position < len(data):
        newline = data.index(b"\n", position)
        length = int(data[position:newline])
        record = data[newline + 1 : newline + 1 + length]
        position = newline + 1 + length
        head, body = record.split(b"\r\n\r\n", 1)
        yield dict(line.split(": ", 1) for line in head.decode().split("\r\n")), body


# --------------------------------------------------------------------------------------------
# A webhook sink: the receiving end of partnerloop's outgoing webhooks
# --------------------------------------------------------------------------------------------


class Sink:
    """Answers every POST 204 and counts it by its webhook-id (the idempotency key)."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.types: Counter[str] = Counter()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                kind = json.loads(body).get("type", "?")
                with lock:
                    outer.ids[self.headers.get("webhook-id") or "?"] += 1
                    outer.types[kind] += 1
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.ids.clear()
        self.types.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------
# A partnerloop instance: a fresh database seeded for the orders
# --------------------------------------------------------------------------------------------


@dataclass
class Instance:
    env: dict[str, str]
    runtime: Any
    program_id: str
    connector_id: str
    webhook_id: str
    affiliates: list[str]
    cleanup: list[Any] = field(default_factory=list)

    def close(self) -> None:
        self.runtime.close()
        for step in reversed(self.cleanup):
            with contextlib.suppress(Exception):
                step()


def pg_schema(admin_url: str) -> tuple[str, Any] | None:
    from sqlalchemy import create_engine, text

    schema = f"pl_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = create_engine(
            admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:
        log(f"PostgreSQL not reachable: {type(error).__name__}: {error}")
        return None

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    separator = "&" if "?" in admin_url else "?"
    return f"{admin_url}{separator}options=-csearch_path%3D{schema}", drop


def prepare(
    backend: str, orders: OrderSet, sink_url: str, *, pg_url: str, workdir: Path
) -> Instance | None:
    """`partnerloop init` in a fresh data dir (and schema), then a program paying 10 %,
    approved affiliates with a link and a coupon each, the orders' clicks, a Shopify
    connector and a webhook endpoint at the sink."""
    from partnerloop.affiliates import service as affiliates
    from partnerloop.cli import initialise
    from partnerloop.core.db import transaction
    from partnerloop.core.settings import Settings
    from partnerloop.integrations import connectors
    from partnerloop.integrations.registry import OUTBOUND, SHOPS
    from partnerloop.programs import service as programs
    from partnerloop.runtime import build_runtime
    from partnerloop.tracking import service as tracking
    from partnerloop.tracking.service import ClickRecord

    data_dir = Path(tempfile.mkdtemp(prefix=f"pl-ingest-{backend}-", dir=workdir))
    env = {"PARTNERLOOP_DATA_DIR": str(data_dir), "PARTNERLOOP_LOG_LEVEL": "warning"}
    cleanup: list[Any] = []
    if backend == "postgresql":
        made = pg_schema(pg_url)
        if made is None:
            return None
        env["PARTNERLOOP_DATABASE_URL"], drop = made
        cleanup.append(drop)
    settings = Settings.from_env(env)
    initialise(settings)
    runtime = build_runtime(settings)
    now = datetime.now(UTC)
    with transaction(runtime.sessions) as session:
        program = programs.create(
            session,
            name="ingest bench",
            currency="USD",
            cookie_days=30,
            allowed_domains=["shop.example.com"],
            commission_type="percentage",
            commission_value="10",
            hold_days=30,
            now=now,
        ).program
        ids = []
        links = []
        for k in range(AFFILIATES):
            signed = affiliates.sign_up(
                session,
                runtime.cipher,
                program_id=program.id,
                email=f"aff{k}@affiliates.example",
                name=f"Affiliate {k}",
                now=now,
            )
            affiliates.approve(
                session,
                runtime.cipher,
                affiliate_id=signed.affiliate.id,
                program_id=program.id,
                now=now,
            )
            ids.append(signed.affiliate.id)
            links.append(
                tracking.create_link(
                    session,
                    program_id=program.id,
                    affiliate_id=signed.affiliate.id,
                    destination_url="https://shop.example.com/p",
                    now=now,
                ).id
            )
            tracking.create_coupon(
                session,
                program_id=program.id,
                affiliate_id=signed.affiliate.id,
                code=f"BENCH{k}",
                now=now,
            )
    clicked = now - timedelta(hours=1)
    for start in range(0, len(orders.clicks), 2000):
        with transaction(runtime.sessions) as session:
            tracking.write_clicks(
                session,
                runtime.cipher,
                [
                    ClickRecord(
                        id=click_id,
                        program_id=program.id,
                        link_id=links[k],
                        affiliate_id=ids[k],
                        created_at=clicked,
                        ip=None,
                        user_agent=None,
                        referrer=None,
                        landing_url="https://shop.example.com/p",
                        subs=(None, None, None, None, None),
                        is_unique=True,
                    )
                    for click_id, k in orders.clicks[start : start + 2000]
                ],
            )
    # The affiliates' own events go nowhere (no endpoint yet): run them out of the way.
    runtime.make_worker().drain()
    with transaction(runtime.sessions) as session:
        shop = connectors.create(
            session,
            runtime.cipher,
            shop=SHOPS["shopify"],
            program_id=program.id,
            settings={"shop_domain": SHOP},
            secret=SECRET,
            credentials={},
            now=now,
        )
        endpoint = connectors.create(
            session,
            runtime.cipher,
            shop=OUTBOUND["webhook"],
            program_id=program.id,
            settings={"url": sink_url},
            secret=None,
            credentials={},
            now=now,
        )
    if backend == "sqlite":
        env["PARTNERLOOP_DATABASE_URL"] = settings.database_url
    return Instance(env, runtime, program.id, shop.id, endpoint.id, ids, cleanup)


# --------------------------------------------------------------------------------------------
# Servers and workers
# --------------------------------------------------------------------------------------------


def bare_app() -> Any:
    """Variant R: Starlette accepting the same POST and answering 200 with JSON."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def hook(request: Request) -> Response:
        body = await request.body()
        return Response(
            b'{"status":"accepted","event_id":"' + str(len(body)).encode() + b'"}',
            media_type="application/json",
        )

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/hooks/{connector_id}", hook, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


def serve_bare(port: int) -> None:
    import uvicorn

    # As `partnerloop serve` runs uvicorn (cli.serve): defaults, access log off.
    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start(name: str, command: list[str], env: dict[str, str], workdir: Path) -> Proc:
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as out:
        popen = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("PARTNERLOOP_")} | env,
            start_new_session=True,  # Ctrl-C reaches the parent only; it stops the children
        )
    return Proc(name, popen, log_path)


def stop(proc: Proc) -> None:
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.popen.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not start:\n{proc.log_path.read_text()[-3000:]}")


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

WRK_LUA = """
local reqs = {}
local i = 0
local threads = {}
accepted, duplicate, other, wrapped = 0, 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path, connector, host = args[1], args[2], args[3]
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local line = "POST /hooks/" .. connector .. " HTTP/1.1\\r\\nHost: " .. host .. "\\r\\n"
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    table.insert(reqs, line .. string.sub(data, nl + 1, nl + len))
    pos = nl + len + 1
  end
end

function request()
  i = i + 1
  if i > #reqs then
    i = 1
    wrapped = wrapped + 1
  end
  return reqs[i]
end

function response(status, headers, body)
  if status == 200 then
    if string.find(body, '"accepted"', 1, true) then
      accepted = accepted + 1
    else
      duplicate = duplicate + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, d, o, w = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    d = d + t:get("duplicate")
    o = o + t:get("other")
    w = w + t:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"accepted":%%d,' ..
    '"duplicate":%%d,"other":%%d,"wrapped":%%d,"errors":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    a, d, o, w, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    accepted: int
    duplicate: int
    other: int
    wrapped: int
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def accepted_rps(self) -> float:
        return (self.accepted + self.duplicate) / self.seconds


def run_wrk(
    base: str, connector: str, requests: Path, *, duration: float, connections: int, workdir: Path
) -> Load:
    script = workdir / "ingest.lua"
    script.write_text(WRK_LUA % {"mark": MARK})
    host = base.split("//", 1)[1]
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "30s"]
    command += ["-s", str(script), base, "--", str(requests), connector, host]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((x for x in completed.stdout.splitlines() if x.startswith(MARK)), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {completed.stdout}{completed.stderr}"
        )
    data = json.loads(line[len(MARK) :])
    return Load(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        accepted=data["accepted"],
        duplicate=data["duplicate"],
        other=data["other"],
        wrapped=data["wrapped"],
        errors=data["errors"],
    )


def ensure_wrk() -> None:
    if subprocess.run(["which", "wrk"], capture_output=True, check=False).returncode != 0:
        log("wrk missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)


# --------------------------------------------------------------------------------------------
# Drain and checks
# --------------------------------------------------------------------------------------------


def backlog(runtime: Any) -> tuple[int, int]:
    """(inbox events, outbox messages) not yet finished."""
    from sqlalchemy import text

    with runtime.engine.connect() as connection:
        inbox = connection.execute(
            text("SELECT count(*) FROM inbound_events WHERE state IN ('pending', 'retry')")
        ).scalar_one()
        outbox = connection.execute(
            text("SELECT count(*) FROM outbox_messages WHERE state IN ('pending', 'retry')")
        ).scalar_one()
    return int(inbox), int(outbox)


def wait_drained(runtime: Any, procs: list[Proc]) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < DRAIN_TIMEOUT_SECONDS:
        if backlog(runtime) == (0, 0):
            return time.perf_counter() - started
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"not drained after {DRAIN_TIMEOUT_SECONDS:.0f} s: {backlog(runtime)}")


def check(
    instance: Instance, orders: OrderSet, load: Load, sink: Sink, connections: int
) -> dict[str, Any]:
    """Everything answered is stored once and processed once; see the module doc."""
    from sqlalchemy import text

    expected = orders.by_id()
    problems: list[str] = []
    with instance.runtime.engine.connect() as db:

        def rows(sql: str, **params: Any) -> list[Any]:
            return list(db.execute(text(sql), params))

        inbox = dict(rows("SELECT state, count(*) FROM inbound_events GROUP BY state"))
        stored = sum(inbox.values())
        conversions = rows(
            "SELECT order_id, affiliate_id, attribution FROM conversions WHERE program_id = :p",
            p=instance.program_id,
        )
        commissions = rows(
            "SELECT order_id, affiliate_id, amount_minor FROM commissions WHERE program_id = :p",
            p=instance.program_id,
        )
        # The affiliates' approvals, fanned out (to nobody) before the endpoint existed.
        setup_events = int(
            db.execute(
                text("SELECT count(*) FROM outbox_messages WHERE topic LIKE 'affiliate.%'")
            ).scalar_one()
        )
        outbox = dict(
            (tuple(r[:2]), r[2])
            for r in rows(
                "SELECT destination_kind, state, count(*) FROM outbox_messages "
                "GROUP BY destination_kind, state"
            )
        )
    answered = load.accepted
    if not 0 <= stored - answered <= connections:
        problems.append(f"inbox rows {stored} vs accepted {answered}")
    if inbox.get("processed", 0) != stored:
        problems.append(f"inbox states {inbox}")
    if load.other or load.errors:
        problems.append(f"{load.other} non-200 answers, {load.errors} socket errors")
    order_ids = [r[0] for r in conversions]
    if len(order_ids) != len(set(order_ids)) or len(order_ids) != stored - load.duplicate:
        problems.append(
            f"{len(order_ids)} conversions ({len(set(order_ids))} unique) for {stored} events"
        )
    unknown = [o for o in order_ids if o not in expected]
    if unknown:
        problems.append(f"{len(unknown)} conversions of orders never sent")
    index = {affiliate: k for k, affiliate in enumerate(instance.affiliates)}
    wrong = [
        r
        for r in conversions
        if r[0] in expected and (index.get(r[1]) if r[1] else None) != expected[r[0]].affiliate
    ]
    if wrong:
        problems.append(f"{len(wrong)} conversions attributed otherwise than sent, e.g. {wrong[0]}")
    want = [expected[o] for o in order_ids if o in expected and expected[o].affiliate is not None]
    got_keys = Counter(r[0] for r in commissions)
    if any(n != 1 for n in got_keys.values()):
        problems.append("an order has more than one commission")
    want_sum = sum(o.commission_minor for o in want)
    got_sum = sum(int(r[2]) for r in commissions)
    if len(commissions) != len(want) or got_sum != want_sum:
        problems.append(
            f"commissions {len(commissions)} / {got_sum} minor, expected {len(want)} / {want_sum}"
        )
    # Fan-out: conversion.created per order + commission.created per commission; each
    # copied once to the endpoint, delivered once to the sink.
    events = len(order_ids) + len(want)
    fanout = outbox.get(("fanout", "delivered"), 0) - setup_events
    hooks = outbox.get(("webhook", "delivered"), 0)
    others = {k: v for k, v in outbox.items() if k[1] != "delivered"}
    if fanout != events or hooks != events or others:
        problems.append(f"outbox fanout {fanout}, webhook {hooks}, expected {events}; {others}")
    twice = [k for k, n in sink.ids.items() if n != 1]
    if len(sink.ids) != events or twice:
        problems.append(
            f"sink got {len(sink.ids)} webhook ids ({len(twice)} more than once), expected {events}"
        )
    return {
        "stored": stored,
        "conversions": len(order_ids),
        "commissions": len(commissions),
        "commission_sum_minor": got_sum,
        "outbox_per_order": round((fanout + hooks) / max(len(order_ids), 1), 3),
        "sink": sum(sink.ids.values()),
        "problems": problems,
    }


# --------------------------------------------------------------------------------------------
# One measured run per variant
# --------------------------------------------------------------------------------------------


def run_reference(args: argparse.Namespace, orders: OrderSet, workdir: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start("bare", [sys.executable, __file__, "--serve-bare", str(port)], {}, workdir)
    try:
        wait_ready(base, proc)
        cpu = proc.cpu_seconds()
        load = run_wrk(
            base, "con_bench", orders.path, duration=args.duration,
            connections=args.connections, workdir=workdir,
        )  # fmt: skip
        cpu = proc.cpu_seconds() - cpu
    finally:
        stop(proc)
    return {"variant": "R", "rps": load.rps, "accepted_rps": load.accepted_rps, "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms, "requests": load.requests, "server_cpu_us": cpu / load.requests * 1e6,
            "problems": [] if load.other == 0 and load.errors == 0 else ["non-200 answers"]}  # fmt: skip


def run_partnerloop(
    variant: str, args: argparse.Namespace, orders: OrderSet, sink: Sink, workdir: Path
) -> dict[str, Any] | None:
    backend = "sqlite" if variant == "S" else "postgresql"
    sink.reset()
    instance = prepare(backend, orders, sink.url, pg_url=args.pg_url, workdir=workdir)
    if instance is None:
        return None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(instance.env, PARTNERLOOP_PUBLIC_URL=base)
    procs: list[Proc] = []
    workers = args.pg_workers if variant == "P" else 1

    def start_workers() -> None:
        for n in range(workers):
            procs.append(start(f"worker-{variant}{n}", [PARTNERLOOP, "worker"], env, workdir))

    try:
        if variant == "P" or args.workers_after:
            env["PARTNERLOOP_WORKER_IN_PROCESS"] = "false"
        serve = start(f"serve-{variant}", [PARTNERLOOP, "serve", "--port", str(port)], env, workdir)
        procs.append(serve)
        if variant == "P" and not args.workers_after:
            start_workers()
        wait_ready(base, serve)
        cpu = [p.cpu_seconds() for p in procs]
        spies = [profile(p, args, workdir) for p in procs] if args.profile else []
        started = time.perf_counter()
        load = run_wrk(
            base, instance.connector_id, orders.path, duration=args.duration,
            connections=args.connections, workdir=workdir,
        )  # fmt: skip
        accept_cpu = [p.cpu_seconds() - c for p, c in zip(procs, cpu, strict=True)]
        for spy in spies:
            spy.wait(timeout=60)
        if variant == "P" and args.pg_workers == 0:  # accept path alone (profiling)
            return {"variant": variant, "accepted_rps": load.accepted_rps, "p50_ms": load.p50_ms,
                    "p99_ms": load.p99_ms, "serve_cpu_us": accept_cpu[0] / load.requests * 1e6,
                    "problems": []}  # fmt: skip
        if args.workers_after:  # the burst is in the inbox; now the workers drain it
            start_workers()
        drain = wait_drained(instance.runtime, procs)
        total = time.perf_counter() - started
        time.sleep(0.5)  # the sink's last answers
        result = check(instance, orders, load, sink, args.connections)
        if load.wrapped:
            result["problems"].append(f"request file exhausted {load.wrapped}x: raise --requests")
    finally:
        for proc in procs:
            stop(proc)
        instance.close()
    return {
        "variant": variant,
        "workers_after": bool(args.workers_after),
        "rps": load.rps,
        "accepted_rps": load.accepted_rps,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "requests": load.requests,
        "accepted": load.accepted,
        "duplicate": load.duplicate,
        "serve_cpu_us": accept_cpu[0] / max(load.requests, 1) * 1e6,
        "worker_cpu_s": sum(accept_cpu[1:]),
        "drain_s": drain,
        "orders_per_s_end_to_end": result["conversions"] / total,
        **result,
    }


def profile(proc: Proc, args: argparse.Namespace, workdir: Path) -> subprocess.Popen[bytes]:
    """py-spy on a server (with its store) or worker for the load's duration:
    collapsed stacks to --profile DIR (summarise with --summarise FILE)."""
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / f"{proc.name}-{int(time.time())}.txt"
    spy = str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(proc.popen.pid), "--duration", str(int(args.duration))]
    command += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
    command += ["--subprocesses"]  # serve's store process too
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(path: Path, top: int = 40) -> None:
    """Share of samples per function (inclusive), from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].rstrip(")") for f in stack.split(";")]
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    print(f"{total} samples")
    for frame, n in inclusive.most_common(top):
        print(f"{n / total:6.1%} {own[frame] / total:6.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="RSP")
    parser.add_argument("--requests", type=int, default=40_000, help="unique signed requests")
    parser.add_argument("--attributed", type=float, default=0.6, help="share with click/coupon")
    parser.add_argument("--pg-workers", type=int, default=2)
    parser.add_argument(
        "--workers-after",
        action="store_true",
        help="no worker during the load (S: serve's in-process worker off); then start "
        "`partnerloop worker` processes (S: 1, P: --pg-workers) and time the drain",
    )
    parser.add_argument("--pg-url", default=PG_URL_DEFAULT)
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--profile", type=Path, help="py-spy every partnerloop process into DIR")
    parser.add_argument("--summarise", type=Path, help="print a py-spy raw profile's top frames")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise)
        return
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    ensure_wrk()
    # Stopped from outside: unwind, so every process this script started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sink = Sink()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pl-ingest-") as tmp:
        workdir = Path(tmp)
        log(f"generating {args.requests:,} signed orders")
        orders = generate(args.requests, attributed=args.attributed, workdir=workdir, seed="r")
        try:
            for rnd in range(1, args.rounds + 1):
                order = list(args.variants) if rnd % 2 else list(reversed(args.variants))
                for variant in order:
                    log(f"round {rnd}: {VARIANTS[variant]}")
                    if variant == "R":
                        row = run_reference(args, orders, workdir)
                    else:
                        row = run_partnerloop(variant, args, orders, sink, workdir)
                    if row is None:
                        continue
                    row["round"] = rnd
                    results.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            sink.stop()
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if any(r["problems"] for r in results):
        sys.exit(1)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    reference = {r["round"]: r["accepted_rps"] for r in results if r["variant"] == "R"}
    print()
    print("| round | variant | accepted/s | vs R (same round) | p50 ms | p99 ms | serve CPU µs/req "
          "| drain s | orders/s end to end | conversions | commissions | check |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        ratio = r["accepted_rps"] / reference[r["round"]] if r["round"] in reference else None
        cpu = r.get("serve_cpu_us", r.get("server_cpu_us", 0.0))
        label = (VARIANTS_AFTER if r.get("workers_after") else VARIANTS)[r["variant"]]
        print(
            f"| {r['round']} | {r['variant']}: {label} | {r['accepted_rps']:,.0f} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{cpu:,.0f} | {r.get('drain_s', 0):.1f} | {r.get('orders_per_s_end_to_end', 0):,.0f} | "
            f"{r.get('conversions', '-')} | {r.get('commissions', '-')} | "
            f"{'ok' if not r['problems'] else '; '.join(r['problems'])} |"
        )
    print()
    for variant in "SP":
        ratios = [
            r["accepted_rps"] / reference[r["round"]]
            for r in results
            if r["variant"] == variant and r["round"] in reference
        ]
        if ratios:
            print(
                f"{variant}: median ratio to R {statistics.median(ratios):.2f} over {len(ratios)} round(s)"
            )


if __name__ == "__main__":
    main()
