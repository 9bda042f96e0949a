"""`partnerloop simulate` end to end: real processes, real HTTP on loopback.

- On SQLite: the command starts its own instance (`--local`, the default) and
  runs the normal, duplicates, out-of-order and crm-outage scenarios; every
  invariant holds and it exits 0.
- On PostgreSQL: the same scenarios against `partnerloop serve` plus two
  `partnerloop worker` processes on the test database (`--url`, `--api-key`).
- A shop double that drops one order and a CRM double that loses one contact
  make it report FAIL lines and exit 1.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from pathlib import Path

import pytest
from rich.console import Console

from partnerloop.runtime import Runtime
from partnerloop.simulator.command import simulate_run
from partnerloop.simulator.scenarios import Knobs
from tests.conftest import Backend, free_port
from tests.processes.conftest import (
    Processes,
    backend_env,
    clean_env,
    run_cli,
    wait_ready,
    with_application_name,
)
from tests.simulator.doubles import DroppingShop, LossyHubSpot

pytestmark = pytest.mark.slow

SCENARIOS = ("normal", "duplicates", "out-of-order", "crm-outage")
INVARIANTS = (
    "the instance drained within the timeout",
    "every order has exactly one conversion",
    "every conversion is credited to the right affiliate",
    "every order has its final status and amounts",
    "every commission has the right amount (none when unpaid)",
    "every customer is in the CRM exactly once, with the right fields",
    "no event quarantined, no message dead-lettered",
)
# Small and short: ten orders a scenario, a two-second CRM outage (the circuit
# breaker's 30 s cooldown is most of the run when it trips).
SMALL = ("--orders", "10", "--rate", "20", "--outage-seconds", "2", "--drain-timeout", "90")


def verdict_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if re.match(r"\s+(PASS|FAIL)  ", line)]


def assert_all_held(output: str, code: int) -> None:
    lines = verdict_lines(output)
    assert code == 0, output
    assert len(lines) == len(SCENARIOS) * len(INVARIANTS), output
    for scenario_lines in (lines[i : i + 7] for i in range(0, len(lines), 7)):
        assert [line.split(":")[0] for line in scenario_lines] == [
            f"PASS  {name}" for name in INVARIANTS
        ]
    # Ten orders each, all accounted for.
    assert lines.count("PASS  every order has exactly one conversion: 10/10") == len(SCENARIOS)
    for name in SCENARIOS:
        assert f"scenario {name} (seed 11)" in output
    assert "all invariants held (4 scenario(s))" in output


def test_the_scenarios_hold_on_a_local_sqlite_instance(tmp_path: Path) -> None:
    # Given no instance at all (the command starts one on a temporary SQLite file)
    env = clean_env()
    results = tmp_path / "results.json"

    # When the four scenarios run
    done = run_cli(
        "simulate", *SCENARIOS, *SMALL, "--seed", "11", "--json", str(results),
        env=env, timeout=240,
    )  # fmt: skip

    # Then every invariant holds, and the outage is seen as such
    assert_all_held(done.stdout, done.returncode)
    assert "CRM down (refused) for 2 s" in done.stdout
    assert "local instance at http://127.0.0.1:" in done.stdout
    # And the JSON says the same, with the figures
    written = json.loads(results.read_text())
    assert [(r["scenario"], r["passed"], r["figures"]["orders"]) for r in written] == [
        (name, True, 10) for name in SCENARIOS
    ]
    assert all(len(r["invariants"]) == len(INVARIANTS) for r in written)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_scenarios_hold_against_serve_and_two_workers_on_postgresql(
    backend: Backend, quiet_queue: Runtime, processes: Processes
) -> None:
    # Given a real serve and two workers on the test's PostgreSQL schema
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = backend_env(backend, PARTNERLOOP_PUBLIC_URL=base, PARTNERLOOP_WORKER_POLL_SECONDS="0.1")
    key_line = run_cli("api-key", "create", "--scope", "admin", "--name", "simulate", env=env)
    assert key_line.returncode == 0, key_line.stderr
    key = key_line.stdout.strip().splitlines()[-1].strip()
    server = processes.start("serve", "--port", str(port), env=env)
    for n in range(2):
        worker_env = {
            **env,
            "PARTNERLOOP_DATABASE_URL": with_application_name(backend.database_url, f"sim{n}"),
        }
        processes.start("worker", env=worker_env)
    wait_ready(base, server)

    # When the four scenarios run against it
    done = run_cli(
        "simulate", *SCENARIOS, *SMALL, "--seed", "11", "--url", base, "--api-key", key,
        env=clean_env(), timeout=240,
    )  # fmt: skip

    # Then every invariant holds there too
    assert_all_held(done.stdout, done.returncode)


def test_a_dropped_order_and_a_lost_contact_fail_the_run() -> None:
    # Given a shop that never sends its third order and a CRM that loses a contact
    output = io.StringIO()
    crm = LossyHubSpot(token=f"pat-{secrets.token_hex(4)}")

    # When a normal day runs with them
    code = simulate_run(
        ["normal"],
        Knobs(orders=8, rate=20),
        target=None,
        seed=3,
        console=Console(file=output, width=300, soft_wrap=True),
        shop_factory=DroppingShop,
        crm=crm,
        drain_timeout=60,
    )

    # Then the run fails, and says exactly what is missing
    text = output.getvalue()
    lines = verdict_lines(text)
    assert code == 1, text
    assert crm.lost is not None
    assert "FAIL  every order has exactly one conversion: 7/8 (1 wrong: order #1003 has 0)" in lines
    commission = next(line for line in lines if "every commission" in line)
    assert commission.startswith("FAIL"), text
    assert "order #1003: no commission instead of [" in commission
    crm_line = next(line for line in lines if "in the CRM exactly once" in line)
    assert crm_line.startswith("FAIL"), text
    assert f"{crm.lost[:14]}…@shoppers.sim.example is there 0 times" in crm_line
    assert "PASS  no event quarantined, no message dead-lettered: 1/1" in lines
    assert "FAILED: normal" in text
