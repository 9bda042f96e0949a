"""`partnerloop demo` on a fresh data directory: seeded, serving, fed simulated
traffic, commissions computed exactly, and stopped cleanly by Ctrl-C.

Runs once, on the default SQLite database (no backend fixture).
"""

from __future__ import annotations

import io
import re
import signal
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from partnerloop.simulator.demo import DemoSeed, _print_banner
from tests.conftest import free_port
from tests.processes.conftest import Proc, Processes, alive, clean_env, click_stores, wait_until

pytestmark = pytest.mark.slow

KEY_LINE = re.compile(r"pl_key_[0-9A-Z]{26}_\S+")
PROGRAM_LINE = re.compile(r"^\s*program:\s+(prg_[0-9A-Z]{26})\s*$")
CENT = Decimal("0.01")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def ten_percent(amount: str) -> str:
    return str((Decimal(amount) * Decimal("0.10")).quantize(CENT, rounding=ROUND_HALF_EVEN))


def banner(proc: Proc) -> tuple[str, str] | None:
    """(program id, admin key) once the banner is out; the key is its last line."""
    if proc.poll() is not None:
        pytest.fail(f"the demo exited with {proc.poll()}; {proc.describe()}")
    lines = proc.stdout_lines()
    programs = [m.group(1) for line in lines if (m := PROGRAM_LINE.match(line))]
    if not programs or not lines or not KEY_LINE.fullmatch(lines[-1]):
        return None
    [program_id] = programs
    return program_id, lines[-1]


def every(api: httpx.Client, path: str, program_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"program_id": program_id, "limit": 200}
    while True:
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        if not body["next_cursor"]:
            return items
        params["cursor"] = body["next_cursor"]


def test_demo_runs_traffic_with_exact_commissions_and_stops_on_ctrl_c(
    tmp_path: Path, processes: Processes
) -> None:
    # Given a fresh data directory and the default SQLite database
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(PARTNERLOOP_DATA_DIR=str(tmp_path / "data"))
    del env["COLUMNS"]  # the banner as a user piping the output gets it

    # When the demo starts
    demo = processes.start("demo", "--port", str(port), env=env)

    # Then it prints the program and, last, the admin key
    program_id, key = wait_until(lambda: banner(demo), timeout=60, what="the demo's banner")

    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
    ) as api:
        # And the simulated traffic turns into clicks and conversions
        # (the traffic is random: a lower bound is what can be asserted)
        def busy() -> dict[str, Any] | None:
            response = api.get("/api/v1/stats", params={"program_id": program_id})
            assert response.status_code == 200, response.text
            stats = dict(response.json())
            return stats if stats["clicks"] >= 3 and stats["conversions"] >= 1 else None

        wait_until(busy, timeout=60, interval=0.5, what="clicks >= 3 and conversions >= 1")

        # And every commission is exactly 10 % of its order's net amount, rounded half-even
        before = every(api, "/api/v1/commissions", program_id)
        conversions = every(api, "/api/v1/conversions", program_id)
        after = every(api, "/api/v1/commissions", program_id)

    by_id = {c["id"]: c for c in conversions}
    # A conversion comes with its commissions read in the same transaction
    embedded = [(conversion, c) for conversion in conversions for c in conversion["commissions"]]
    assert len(embedded) >= 1
    for conversion, commission in embedded:
        net = str(Decimal(conversion["amount"]) - Decimal(conversion["refunded_amount"]))
        assert (
            commission["affiliate_id"],
            commission["order_id"],
            commission["rule"],
            commission["original_amount"],
            commission["amount"],
        ) == (
            conversion["affiliate_id"],
            conversion["order_id"],
            {"type": "percentage", "value": "10"},
            ten_percent(conversion["amount"]),
            ten_percent(net),
        ), conversion
    # Every conversion the demo's affiliates brought earned exactly one commission
    assert [
        c["order_id"] for c in conversions if c["affiliate_id"] and len(c["commissions"]) != 1
    ] == []
    # The commission list agrees with them (a row a refund changed meanwhile is left out)
    unchanged = [c for c in before if c in after]
    assert len(unchanged) >= 1
    for commission in unchanged:
        conversion = by_id[commission["conversion_id"]]
        assert [commission] == [c for c in conversion["commissions"] if c["id"] == commission["id"]]

    # When Ctrl-C is pressed (the demo writes its clicks through a click store, as serve does)
    stores = click_stores(demo.pid)
    assert len(stores) == 1, demo.describe()
    demo.signal(signal.SIGINT)

    # Then the demo stops within 15 s, cleanly, with the shell's status for Ctrl-C
    # (uvicorn re-raises the signal it caught once it has shut down)
    assert demo.wait(timeout=15) == 128 + signal.SIGINT, demo.describe()
    assert [line for line in demo.stderr_lines() if "Traceback" in line] == []
    assert not alive(stores[0]), "the click store outlived the demo"
    # And neither the affiliates' nor the shoppers' e-mails were ever logged
    assert EMAIL.findall(demo.output()) == []


def test_demo_banner_keeps_each_url_on_one_line() -> None:
    # Given the banner printed to an 80-column console (a pipe, or a default terminal)
    base = "http://127.0.0.1:8000"
    program_id = "prg_01M86DW9HK1MJW5M89XV7JS7N7"
    seed = DemoSeed(
        program_id=program_id,
        postback_token="HTTa8doPj4vqO5qYQ7fZcKVLkVoJ91s-",
        admin_key="pl_key_01M86DW9J3Y8HXR8221AJS3K34_HVy-0IWOblxUSSfGn928xuLb2ZvjU6cX",
        link_codes=["PMBxTVw"],
        coupons=["CHLOE10"],
    )
    out = io.StringIO()

    # When it is printed
    _print_banner(Console(file=out, width=80), base, seed, True)

    # Then every URL it shows can be copied from one line
    lines = out.getvalue().splitlines()
    wanted = [
        f"{base}/admin/login",
        f"{base}/portal/{program_id}/signup",
        f"{base}/api/v1/stats?program_id={program_id}",
        f"{base}/postback?token={seed.postback_token}&order_id=...&amount=...",
        f'"{base}/api/v1/commissions?program_id={program_id}"',
    ]
    assert [url for url in wanted if not any(url in line for line in lines)] == []
