"""Benchmark of the click redirect GET /r/{code}, side by side in one run.

Variants, each a server of its own on 127.0.0.1, loaded over loopback by a
separate load generator process (wrk if installed, else a small asyncio client):

  N  nginx answering `return 302` (Debian's nginx, installed when missing)
  S  a bare Starlette app under uvicorn answering the same 302 without recording
     anything (as many uvicorn workers as partnerloop gets: --workers)
  A  a bare ASGI callable under uvicorn (the ceiling for any Python server)
  B  `partnerloop serve` on the embedded default SQLite: every click is committed
     (group commit) before its 302; its in-process worker runs too
  C  `partnerloop serve` on PostgreSQL in a throw-away schema, plus one
     `partnerloop worker` process (skipped if PostgreSQL is unreachable)
  D  naive contrast: a FastAPI route doing resolve_link + write_clicks + commit
     per request through partnerloop's services, on SQLite (not run by default)

The machine is shared and noisy, so all servers run at once, the variants are
measured in interleaved rounds (order reversed every other round), and ratios
(to S and to N) are computed within each round. After every measured run of
B, C and D the clicks table is counted and compared with the 302s the load
generator got; for B and C the group-commit batch sizes come from GET
/metrics, and the peak resident memory of serve (and its worker) is read from
/proc.

Run from the repository root:

    .venv/bin/python benchmarks/redirect.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import Request  # module level: FastAPI resolves the string annotation

PG_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
VARIANTS = {
    "N": "nginx `return 302`",
    "S": "bare Starlette 302 (reference)",
    "A": "bare ASGI callable 302",
    "B": "partnerloop serve, SQLite",
    "C": "partnerloop serve, PostgreSQL",
    "D": "naive FastAPI route, SQLite, commit per click",
}
RECORDING = ("B", "C", "D")  # variants that store clicks
PARTNERLOOP = ("B", "C")  # `partnerloop serve` itself
MARK = "BENCHJSON "
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Server side (runs in the child process: redirect.py --serve VARIANT --port N)
# --------------------------------------------------------------------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Variant A: the least an ASGI server can do to answer a redirect."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", b"https://demo-shop.example/products/1"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def starlette_app() -> Any:
    """Variant S: the same 302 from a plain Starlette route, recording nothing."""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    async def redirect(request: Any) -> RedirectResponse:
        return RedirectResponse("https://demo-shop.example/products/1", status_code=302)

    return Starlette(routes=[Route("/r/{code}", redirect)])


def naive_app(runtime: Any) -> Any:
    """Variant D: what the redirect looks like without the fast path and group
    commit: a FastAPI path operation, one query to resolve the link and one
    transaction (INSERT click + rollup upsert + COMMIT) per request."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse, RedirectResponse

    from partnerloop.core.clock import utcnow
    from partnerloop.core.db import transaction
    from partnerloop.tracking import service as tracking
    from partnerloop.tracking.destinations import with_query
    from partnerloop.tracking.service import ClickRecord

    api = FastAPI()

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/r/{code}", response_model=None)
    def redirect(code: str, request: Request) -> PlainTextResponse | RedirectResponse:
        with transaction(runtime.sessions) as session:
            target = tracking.resolve_link(session, code)
            if target is None:
                return PlainTextResponse("Link not found", status_code=404)
            click = ClickRecord(
                id=tracking.new_click_id(),
                program_id=target.program_id,
                link_id=target.link_id,
                affiliate_id=target.affiliate_id,
                created_at=utcnow(),
                ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
                referrer=request.headers.get("referer"),
                landing_url=target.destination_url,
                subs=(None, None, None, None, None),
                is_unique=True,
            )
            tracking.write_clicks(session, runtime.cipher, [click])
        location = with_query(target.destination_url, [("plclid", click.id)])
        return RedirectResponse(location, status_code=302)

    return api


def serve(variant: str, port: int, workers: int) -> None:
    import uvicorn

    lifespan: Literal["on", "off"] = "on"
    if variant in ("A", "S"):
        # An import string: uvicorn needs one to start more than one worker.
        app: Any = f"redirect:{'bare_app' if variant == 'A' else 'starlette_app'}"
        lifespan = "off"
        sys.path.insert(0, str(Path(__file__).parent))
    else:
        from partnerloop.core import logs
        from partnerloop.core.settings import Settings
        from partnerloop.runtime import build_runtime

        settings = Settings.from_env()  # PARTNERLOOP_* set by the parent
        logs.configure(settings.log_level)
        runtime = build_runtime(settings)
        app = naive_app(runtime)
        workers = 1
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        workers=workers,
        factory=variant == "S",
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
    )


# --------------------------------------------------------------------------------------------
# Load generators: wrk with a Lua script, or an asyncio fallback in a subprocess
# --------------------------------------------------------------------------------------------

WRK_LUA = """
local codes = {%(codes)s}
local reqs = {}
local i = 0
local threads = {}
s302 = 0
sother = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for _, code in ipairs(codes) do
    table.insert(reqs, wrk.format("GET", "/r/" .. code, {
      ["User-Agent"] = "%(ua)s",
      ["Accept"] = "text/html",
      ["Referer"] = "https://blog.example/review",
    }))
  end
end

function request()
  i = i %% #reqs + 1
  return reqs[i]
end

function response(status, headers, body)
  if status == 302 then s302 = s302 + 1 else sother = sother + 1 end
end

function done(summary, latency, requests)
  local n302, nother = 0, 0
  for _, t in ipairs(threads) do
    n302 = n302 + t:get("s302")
    nother = nother + t:get("sother")
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"mean_us":%%.1f,"max_us":%%d,"s302":%%d,"other":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, n302, nother, e.connect, e.read,
    e.write, e.status, e.timeout))
end
"""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    s302: int
    other: int
    socket_errors: int
    cpu_seconds: float  # the load generator's own CPU time

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_load(
    tool: str,
    base: str,
    codes: list[str],
    *,
    duration: float,
    connections: int,
    threads: int,
    workdir: Path,
) -> LoadResult:
    cpu_before = _children_cpu()
    if tool == "wrk":
        script = workdir / "redirect.lua"
        script.write_text(
            WRK_LUA % {"codes": ", ".join(f'"{c}"' for c in codes), "ua": USER_AGENT, "mark": MARK}
        )
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base,
        ]
    else:
        command = [
            sys.executable,
            __file__,
            "--loadgen-child",
            base,
            "--codes",
            ",".join(codes),
            "--duration",
            str(duration),
            "--connections",
            str(connections),
        ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = _children_cpu() - cpu_before
    line = next((x for x in completed.stdout.splitlines() if x.startswith(MARK)), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"load generator failed ({completed.returncode}): {completed.stdout}{completed.stderr}"
        )
    data = json.loads(line[len(MARK) :])
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        s302=data["s302"],
        other=data["other"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        cpu_seconds=cpu,
    )


async def _loadgen(base: str, codes: list[str], duration: float, connections: int) -> None:
    """Fallback closed-loop HTTP/1.1 keep-alive client (raw asyncio streams: httpx
    would be the bottleneck). Prints the same JSON line as the wrk script."""
    host, port = base.split("//", 1)[1].rstrip("/").split(":")
    requests = [
        (
            f"GET /r/{code} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: text/html\r\nReferer: https://blog.example/review\r\n\r\n"
        ).encode()
        for code in codes
    ]
    latencies: list[float] = []
    counts = {"s302": 0, "other": 0, "errors": 0}
    started = time.perf_counter()
    deadline = started + duration

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        i = offset
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                writer.write(requests[i % len(requests)])
                i += 1
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - sent)
                counts["s302" if head[9:12] == b"302" else "other"] += 1
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6)

    result = {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "p50_us": pct(0.50) if latencies else 0,
        "p90_us": pct(0.90) if latencies else 0,
        "p99_us": pct(0.99) if latencies else 0,
        "mean_us": statistics.fmean(latencies) * 1e6 if latencies else 0.0,
        "max_us": int(latencies[-1] * 1e6) if latencies else 0,
        "s302": counts["s302"],
        "other": counts["other"],
        "connect": 0,
        "read": counts["errors"],
        "write": 0,
        "status": 0,
        "timeout": 0,
    }
    print(MARK + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Orchestration (the parent process)
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    variant: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    runtime: Any = None  # the parent's own Runtime on the same database (for counting)
    codes: list[str] = field(default_factory=list)
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # e.g. a worker

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server process, its children (nginx and uvicorn workers) and helpers."""
        roots = [self.process.pid, *(p.pid for p in self.helpers)]
        return roots + [pid for root in roots for pid in children(root)]

    def cpu_seconds(self) -> float:
        return sum(cpu_of(pid) for pid in self.pids())

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM), summed over the processes."""
        return sum(status_kb(pid, "VmHWM") for pid in self.pids()) / 1024


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    found.append(int(entry.name))
    return found


def cpu_of(pid: int) -> float:
    # utime + stime of the whole process (all its threads).
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NGINX_CONF = """
worker_processes %(workers)s;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %(dir)s/body;
  proxy_temp_path %(dir)s/proxy;
  fastcgi_temp_path %(dir)s/fastcgi;
  uwsgi_temp_path %(dir)s/uwsgi;
  scgi_temp_path %(dir)s/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%(port)d;
    location / { return 302 https://demo-shop.example/products/1; }
  }
}
"""


def ensure_tools(need_nginx: bool, want_wrk: bool) -> None:
    """wrk and nginx from Debian, installed when missing (the machine reaches its mirror)."""
    missing = [t for t, wanted in (("wrk", want_wrk), ("nginx", need_nginx)) if wanted]
    missing = [t for t in missing if not shutil.which(t) and not Path(f"/usr/sbin/{t}").exists()]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log(f"installing {', '.join(missing)} from Debian")
    command = [*sudo, "apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(command, capture_output=True, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], capture_output=True, check=False)
        subprocess.run(command, capture_output=True, check=False)


def start_server(
    variant: str, env: dict[str, str], workdir: Path, args: argparse.Namespace
) -> Server:
    port = free_port()
    log_path = workdir / f"server-{variant}.log"
    child_env = {**os.environ, **env, "PARTNERLOOP_LOG_LEVEL": "warning"}
    if variant == "N":
        nginx_dir = workdir / "nginx"
        nginx_dir.mkdir()
        conf = nginx_dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF % {"workers": args.nginx_workers, "dir": nginx_dir, "port": port}
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        command = [nginx, "-c", str(conf), "-p", str(nginx_dir)]
    elif variant in PARTNERLOOP:
        # The real command, as a merchant runs it.
        command = [str(Path(sys.executable).parent / "partnerloop"), "serve", "--port", str(port)]
        command += ["--workers", str(args.workers)]
    else:
        command = [sys.executable, __file__, "--serve", variant, "--port", str(port)]
        command += ["--workers", str(args.workers)]
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,  # Ctrl-C reaches the parent only; it stops the children
        )
    server = Server(variant, port, process, log_path)
    if variant == "C":  # on PostgreSQL the worker is a process of its own
        with (workdir / "worker-C.log").open("wb") as out:
            worker = [str(Path(sys.executable).parent / "partnerloop"), "worker"]
            server.helpers.append(
                subprocess.Popen(
                    worker, stdout=out, stderr=subprocess.STDOUT, env=child_env,
                    start_new_session=True,
                )
            )  # fmt: skip
    return server


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    path = "/healthz" if server.variant in RECORDING else "/r/ready-probe"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base + path, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"server {server.variant} did not start:\n{server.log_path.read_text()[-3000:]}"
    )


def stop_server(server: Server) -> None:
    for process in [server.process, *server.helpers]:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if server.runtime is not None:
        server.runtime.close()


def prepare_partnerloop(data_dir: Path, database_url: str | None) -> tuple[Any, list[str]]:
    """`partnerloop init` + the demo seed, in the parent; the server reads the same env."""
    from partnerloop.cli import initialise
    from partnerloop.core.settings import Settings
    from partnerloop.runtime import build_runtime
    from partnerloop.simulator.demo import seed

    env = {"PARTNERLOOP_DATA_DIR": str(data_dir)}
    if database_url:
        env["PARTNERLOOP_DATABASE_URL"] = database_url
    settings = Settings.from_env(env)
    initialise(settings)
    runtime = build_runtime(settings)
    demo = seed(runtime)
    return runtime, demo.link_codes


def pg_schema_create(admin_url: str) -> tuple[Any, str] | None:
    from sqlalchemy import create_engine, text

    schema = f"pl_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = create_engine(
            admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:
        log(f"PostgreSQL not reachable, skipping C: {type(error).__name__}: {error}")
        return None
    return admin, schema


def pg_schema_drop(admin: Any, schema: str) -> None:
    from sqlalchemy import text

    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def db_counts(runtime: Any) -> tuple[int, int]:
    """(rows in clicks, sum of the daily_stats click rollup)."""
    from sqlalchemy import text

    with runtime.engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM clicks")).scalar_one()
        rollup = connection.execute(text("SELECT coalesce(sum(clicks), 0) FROM daily_stats"))
        return int(rows), int(rollup.scalar_one())


def scrape_metrics(server: Server) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = httpx.get(server.base + "/metrics", timeout=10.0).text
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body):
        if family.name.startswith("partnerloop_"):
            for sample in family.samples:
                label = sample.labels.get("le") or sample.labels.get("outcome") or ""
                samples[(sample.name, label)] = sample.value
    return samples


def redirects_answered(metrics: dict[tuple[str, str], float]) -> float:
    return sum(v for (name, _), v in metrics.items() if name == "partnerloop_redirects_total")


def wait_quiet(server: Server) -> None:
    """Let the server finish what wrk left in flight (clicks still being committed)."""
    last = None
    for _ in range(50):
        time.sleep(0.2)
        if server.variant in PARTNERLOOP:
            now: Any = redirects_answered(scrape_metrics(server))
        elif server.runtime is not None:
            now = db_counts(server.runtime)
        else:
            return
        if now == last:
            return
        last = now


@dataclass
class Snapshot:
    rows: int = 0
    rollup: int = 0
    metrics: dict[tuple[str, str], float] = field(default_factory=dict)


def snapshot(server: Server) -> Snapshot:
    if server.runtime is None:
        return Snapshot()
    rows, rollup = db_counts(server.runtime)
    metrics = scrape_metrics(server) if server.variant in PARTNERLOOP else {}
    return Snapshot(rows, rollup, metrics)


@dataclass
class Run:
    variant: str
    round: int
    load: LoadResult
    server_cpu: float
    rows: int | None = None
    rollup: int | None = None
    metrics: dict[tuple[str, str], float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    @property
    def per_cpu_second(self) -> float:
        """Requests answered per second of the server's own CPU (wrk shares the cores)."""
        return self.load.requests / self.server_cpu if self.server_cpu else 0.0

    def metric(self, name: str, label: str = "") -> float:
        return self.metrics.get((name, label), 0.0)


def measure(server: Server, tool: str, args: argparse.Namespace, rnd: int, workdir: Path) -> Run:
    before = snapshot(server)
    cpu_before = server.cpu_seconds()
    load = run_load(
        tool,
        server.base,
        server.codes,
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        workdir=workdir,
    )
    cpu = server.cpu_seconds() - cpu_before
    run = Run(server.variant, rnd, load, cpu, peak_rss_mb=server.peak_rss_mb())
    if load.other:
        run.problems.append(f"{load.other} non-302 answers")
    if load.socket_errors:
        run.problems.append(f"{load.socket_errors} socket errors/timeouts")
    if server.runtime is None:
        return run
    wait_quiet(server)
    after = snapshot(server)
    run.rows = after.rows - before.rows
    run.rollup = after.rollup - before.rollup
    run.metrics = {k: v - before.metrics.get(k, 0.0) for k, v in after.metrics.items()}
    # Every 302 counted by the load generator is a stored click. A few more rows than
    # 302s are the requests in flight when the load generator stopped: the server
    # committed them, their answer was never read.
    extra = run.rows - load.s302
    if not 0 <= extra <= args.connections:
        run.problems.append(f"clicks rows {run.rows} vs 302s {load.s302}")
    if run.rollup != run.rows:
        run.problems.append(f"daily_stats clicks {run.rollup} != rows {run.rows}")
    if server.variant in PARTNERLOOP:
        recorded = run.metric("partnerloop_redirects_total", "recorded")
        written = run.metric("partnerloop_clicks_written_total")
        if not recorded == written == run.rows:
            run.problems.append(f"recorded {recorded:g} / written {written:g} / rows {run.rows}")
        for outcome in ("unrecorded", "not_found"):
            if run.metric("partnerloop_redirects_total", outcome):
                run.problems.append(f"{outcome} redirects")
        if run.metric("partnerloop_click_write_failures_total"):
            run.problems.append("click write failures")
    return run


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

BUCKETS = ("1", "2", "5", "10", "25", "50", "100", "250", "500", "1000", "+Inf")


def batch_stats(run: Run) -> dict[str, Any]:
    name = "partnerloop_click_batch_size"
    commits = run.metric(name + "_count")
    cumulative = [run.metric(name + "_bucket", _le(b)) for b in BUCKETS]
    per_bucket = [c - p for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)]
    labels = ["1", "2", "3-5", "6-10", "11-25", "26-50", "51-100", "101-250", "251-500"]
    labels += ["501-1000", ">1000"]
    shares = {
        label: n / commits for label, n in zip(labels, per_bucket, strict=True) if n and commits
    }

    def quantile_bound(q: float) -> str:
        for bound, total in zip(BUCKETS, cumulative, strict=True):
            if commits and total >= q * commits:
                return "≤" + bound
        return "-"

    commit_count = run.metric("partnerloop_click_commit_seconds_count")
    return {
        "commits": int(commits),
        "mean": run.metric(name + "_sum") / commits if commits else 0.0,
        "p50": quantile_bound(0.5),
        "p99": quantile_bound(0.99),
        "shares": shares,
        "commit_ms": (
            1000 * run.metric("partnerloop_click_commit_seconds_sum") / commit_count
            if commit_count
            else 0.0
        ),
        "commits_per_s": commits / run.load.seconds if run.load.seconds else 0.0,
    }


def _le(bound: str) -> str:
    return bound if bound == "+Inf" else f"{float(bound)}"


def _figure(run: Run, attr: str) -> float:
    return float(getattr(run.load, attr) if hasattr(run.load, attr) else getattr(run, attr))


def ratio_by_round(runs: list[Run], variant: str, attr: str, base: str) -> float | None:
    """Median over rounds of (variant / base in the same round)."""
    ratios = []
    for rnd in {r.round for r in runs}:
        mine = [r for r in runs if r.variant == variant and r.round == rnd]
        base_runs = [r for r in runs if r.variant == base and r.round == rnd]
        if mine and base_runs and _figure(base_runs[0], attr):
            ratios.append(_figure(mine[0], attr) / _figure(base_runs[0], attr))
    return statistics.median(ratios) if ratios else None


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(runs: list[Run], args: argparse.Namespace, tool: str) -> str:
    lines = []
    variants = [v for v in VARIANTS if any(r.variant == v for r in runs)]
    rounds = max(r.round for r in runs)
    bases = [b for b in ("S", "N") if b in variants]
    lines.append(
        f"Load: {tool}, {args.threads} thread(s), {args.connections} connections, "
        f"{args.duration:g} s per run, {rounds} interleaved round(s); uvicorn workers: "
        f"{args.workers}, nginx worker_processes: {args.nginx_workers}. Figures are medians "
        "over rounds; ratios are taken within each round, then the median."
    )
    lines.append("")
    head = "| variant | req/s | " + "".join(f"vs {b} | " for b in bases)
    head += "p50 ms | p99 ms | server CPU µs/req | req per server CPU-s | "
    head += "".join(f"CPU-s vs {b} | " for b in bases)
    head += "peak RSS MB | 302s | clicks stored | check |"
    lines.append(head)
    lines.append("|---|" + "---:|" * (head.count("|") - 3) + "---|")
    med = statistics.median
    for v in variants:
        mine = [r for r in runs if r.variant == v]
        rps = med(r.load.rps for r in mine)
        p50 = med(r.load.p50_ms for r in mine)
        p99 = med(r.load.p99_ms for r in mine)
        cpu = med(1e6 * r.server_cpu / r.load.requests for r in mine if r.load.requests)
        per_cpu = med(r.per_cpu_second for r in mine)
        s302 = sum(r.load.s302 for r in mine)
        rss = max(r.peak_rss_mb for r in mine)
        rows = "-" if mine[0].rows is None else f"{sum(r.rows or 0 for r in mine):,}"
        problems = [p for r in mine for p in r.problems]
        check = "; ".join(problems) if problems else ("ok" if mine[0].rows is not None else "-")
        line = f"| {v}: {VARIANTS[v]} | {rps:,.0f} | "
        line += "".join(f"{fmt_ratio(ratio_by_round(runs, v, 'rps', b))} | " for b in bases)
        line += f"{p50:.2f} | {p99:.2f} | {cpu:,.0f} | {per_cpu:,.0f} | "
        line += "".join(
            f"{fmt_ratio(ratio_by_round(runs, v, 'per_cpu_second', b))} | " for b in bases
        )
        line += f"{rss:,.0f} | {s302:,} | {rows} | {check} |"
        lines.append(line)
    lines.append("")
    lines.append("Per run:")
    lines.append("")
    lines.append(
        "| round | variant | req/s | p50 ms | p99 ms | server CPU % | load gen CPU % "
        "| 302s | other | clicks rows | rows - 302s |"
    )
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(runs, key=lambda r: (r.round, list(VARIANTS).index(r.variant))):
        rows = "-" if r.rows is None else f"{r.rows:,}"
        extra = "-" if r.rows is None else str(r.rows - r.load.s302)
        lines.append(
            f"| {r.round} | {r.variant} | {r.load.rps:,.0f} | {r.load.p50_ms:.2f} "
            f"| {r.load.p99_ms:.2f} | {100 * r.server_cpu / r.load.seconds:.0f} "
            f"| {100 * r.load.cpu_seconds / r.load.seconds:.0f} | {r.load.s302:,} "
            f"| {r.load.other} | {rows} | {extra} |"
        )
    group = [r for r in runs if r.variant in PARTNERLOOP]
    if group:
        lines.append("")
        lines.append(
            "Click batches the server process sent to its click store (from /metrics, deltas "
            "over each measured run; the store may commit several batches together):"
        )
        lines.append("")
        lines.append(
            "| round | variant | batches | batches/s | mean batch | p50 batch | p99 batch "
            "| mean wait for commit ms | batch size distribution (share of batches) |"
        )
        lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---|")
        for r in sorted(group, key=lambda r: (r.round, r.variant)):
            b = batch_stats(r)
            dist = ", ".join(
                f"{k}: {v:.0%}" if v >= 0.005 else f"{k}: <1%" for k, v in b["shares"].items()
            )
            lines.append(
                f"| {r.round} | {r.variant} | {b['commits']:,} | {b['commits_per_s']:,.0f} "
                f"| {b['mean']:.1f} | {b['p50']} | {b['p99']} | {b['commit_ms']:.2f} | {dist} |"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64, help="open connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes of S, A, B and C (serve --workers)"
    )
    parser.add_argument(
        "--nginx-workers", default="auto", help="nginx worker_processes (default: auto)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (round 1)")
    parser.add_argument("--variants", default="NSABC", help="which variants, e.g. NSB (D: naive)")
    parser.add_argument("--pg-url", default=os.environ.get("PARTNERLOOP_TEST_PG", PG_URL_DEFAULT))
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen-child", help=argparse.SUPPRESS)
    parser.add_argument("--codes", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return
    if args.loadgen_child:
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
        asyncio.run(
            _loadgen(args.loadgen_child, args.codes.split(","), args.duration, args.connections)
        )
        return

    wanted = [v for v in VARIANTS if v in args.variants.upper()]
    if "S" not in wanted:
        wanted.insert(0, "S")  # the reference the targets refer to
    # Installed first, so that a fresh machine's first run measures with wrk too.
    ensure_tools("N" in wanted, args.loadgen != "python")
    tool = args.loadgen
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    if tool == "python":
        log("load generator: the asyncio fallback (wrk not found or --loadgen python)")
    if "N" in wanted and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        log("nginx is not installed and could not be: skipping N")
        wanted.remove("N")
    workdir = Path(tempfile.mkdtemp(prefix="partnerloop-bench-"))
    servers: list[Server] = []
    pg: tuple[Any, str] | None = None
    started = time.monotonic()
    try:
        for variant in wanted:
            env: dict[str, str] = {}
            runtime, codes = None, ["bench1", "bench2", "bench3"]
            if variant in RECORDING:
                data_dir = workdir / f"data-{variant}"
                url = None
                if variant == "C":
                    pg = pg_schema_create(args.pg_url)
                    if pg is None:
                        continue
                    url = f"{args.pg_url}?options=-csearch_path%3D{pg[1]}"
                log(f"{variant}: init + seed ({'PostgreSQL' if url else 'SQLite'})")
                runtime, codes = prepare_partnerloop(data_dir, url)
                env["PARTNERLOOP_DATA_DIR"] = str(data_dir)
                if url:
                    env["PARTNERLOOP_DATABASE_URL"] = url
            server = start_server(variant, env, workdir, args)
            server.runtime, server.codes = runtime, codes
            servers.append(server)
        for server in servers:
            wait_ready(server)
            if server.variant in RECORDING:  # one real click: 302 with a click id
                answer = httpx.get(f"{server.base}/r/{server.codes[0]}", timeout=10.0)
                location = answer.headers.get("location", "")
                if answer.status_code != 302 or "plclid=" not in location:
                    raise RuntimeError(f"{server.variant}: bad redirect {answer} {location}")
        log(f"servers up in {time.monotonic() - started:.1f}s: {[s.variant for s in servers]}")

        runs: list[Run] = []
        for rnd in range(1, args.rounds + 1):
            order = servers if rnd % 2 else list(reversed(servers))
            for server in order:
                if rnd == 1 and args.warmup > 0:
                    run_load(
                        tool,
                        server.base,
                        server.codes,
                        duration=args.warmup,
                        connections=args.connections,
                        threads=args.threads,
                        workdir=workdir,
                    )
                    wait_quiet(server)
                time.sleep(0.5)
                run = measure(server, tool, args, rnd, workdir)
                runs.append(run)
                log(
                    f"round {rnd} {server.variant}: {run.load.rps:,.0f} req/s, "
                    f"p50 {run.load.p50_ms:.2f} ms, p99 {run.load.p99_ms:.2f} ms"
                    + (f", PROBLEMS: {run.problems}" if run.problems else "")
                )
        print(report(runs, args, tool))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": {"nproc": os.cpu_count(), "uname": " ".join(platform.uname())},
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "runs": [
                            {
                                "variant": r.variant,
                                "round": r.round,
                                "load": r.load.__dict__,
                                "server_cpu": r.server_cpu,
                                "rows": r.rows,
                                "rollup": r.rollup,
                                "batch": batch_stats(r) if r.variant in PARTNERLOOP else None,
                                "peak_rss_mb": r.peak_rss_mb,
                                "problems": r.problems,
                            }
                            for r in runs
                        ],
                    },
                    indent=2,
                )
            )
        log(f"total {time.monotonic() - started:.0f}s")
        if any(r.problems for r in runs):
            sys.exit(1)
    finally:
        for server in servers:
            stop_server(server)
        if pg is not None:
            pg_schema_drop(*pg)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
