"""One simulation: set up through the API, send the plan's traffic at its pace,
wait (bounded) for the instance to drain, reconcile, report.

Fake shop and fake CRM come in as parameters, so a test can hand in a double
that loses an order or a contact and see the reconciliation report it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from partnerloop.simulator import setup as api
from partnerloop.simulator.fake_crm import FakeHubSpot
from partnerloop.simulator.fake_shop import FakeShop, ShopConfig, ShopError, ShopFactory, ShopStats
from partnerloop.simulator.instance import Target
from partnerloop.simulator.plan import Plan, make_plan
from partnerloop.simulator.reconcile import Expectation, Observed, Verdict, reconcile
from partnerloop.simulator.report import Figures, figures_of
from partnerloop.simulator.scenarios import Scenario

POLL_SECONDS = 0.5
QUIET_POLLS = 2  # polls in a row with nothing due before the instance counts as drained


@dataclass
class Outcome:
    scenario: Scenario
    plan: Plan
    seed: int
    verdicts: list[Verdict]
    figures: Figures
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


def _client(target: Target, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=target.url,
        headers={"Authorization": f"Bearer {key or target.api_key}"},
        timeout=30.0,
        follow_redirects=False,
    )


def run_scenario(
    scenario: Scenario,
    *,
    target: Target,
    crm: FakeHubSpot,
    seed: int,
    drain_timeout: float,
    concurrency: int,
    console: Console,
    shop_factory: ShopFactory = FakeShop,
) -> Outcome:
    plan = make_plan(scenario.name, scenario.shape, seed=seed)
    with _client(target) as admin:
        made = api.create(
            admin,
            scenario=scenario.name,
            affiliates=scenario.shape.affiliates,
            crm_url=crm.url,
            crm_token=crm.token,
        )
    stats = ShopStats()
    calls_before = dict(crm.calls.by_status)
    shop = shop_factory(
        ShopConfig(
            base_url=target.url,
            hook_path=f"/hooks/{made.shop_connector_id}",
            secret=made.shop_secret,
            shop_domain=made.shop_domain,
            currency=made.currency,
            link_codes=made.link_codes,
        ),
        stats,
    )
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        sending = progress.add_task(f"{scenario.name}: orders sent", total=len(plan.orders))
        if scenario.outage_seconds:
            crm.outage(scenario.outage_seconds, mode=scenario.outage_mode)
        if scenario.storm_seconds:
            crm.storm(scenario.storm_seconds)
        started = time.monotonic()
        _send(shop, plan, scenario.rate, concurrency, lambda: progress.advance(sending))
        sent_seconds = time.monotonic() - started
        draining = progress.add_task(
            f"{scenario.name}: waiting for the instance to drain", total=None
        )
        drained_after, due = _wait_drained(
            target, made.program_key, crm, drain_timeout, lambda: progress.advance(draining)
        )
    with _client(target) as admin:
        seen = _observe(admin, made.program_id, target, made.program_key, crm)
    verdicts = reconcile(
        plan,
        Expectation(made.rate, made.currency, made.affiliate_ids, made.affiliate_names),
        seen,
    )
    drained = Verdict("the instance drained within the timeout", 1)
    if drained_after is None:
        drained.problems.append(f"{due} jobs still due after {drain_timeout:g} s")
    verdicts.insert(0, drained)
    figures = figures_of(
        plan,
        stats,
        seen,
        sent_seconds=sent_seconds,
        drained_seconds=drained_after,
        crm_calls={
            status: count - calls_before.get(status, 0)
            for status, count in crm.calls.by_status.items()
            if count > calls_before.get(status, 0)
        },
    )
    return Outcome(scenario, plan, seed, verdicts, figures, list(stats.errors))


def _send(
    shop: FakeShop, plan: Plan, rate: float, concurrency: int, advance: Callable[[], None]
) -> None:
    """Each order at its time (order i at i / rate seconds), several in flight at
    once. Daemon threads and a stop flag: Ctrl-C ends the run at once."""
    start = time.monotonic()
    client = httpx.Client(
        timeout=30.0, follow_redirects=False, limits=httpx.Limits(max_connections=concurrency)
    )
    next_index = iter(range(len(plan.orders)))
    lock = threading.Lock()
    stop = threading.Event()

    def sender() -> None:
        while not stop.is_set():
            with lock:
                index = next(next_index, None)
            if index is None or stop.wait(max(0.0, start + index / rate - time.monotonic())):
                return
            order = plan.orders[index]
            try:
                shop.send_order(client, order)
            except (ShopError, httpx.HTTPError) as error:
                with shop.stats.lock:
                    shop.stats.errors.append(f"order #{order.number}: {error}")
            advance()

    threads = [
        threading.Thread(target=sender, name=f"fake-shop-{n}", daemon=True)
        for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        client.close()


def _due(summary: dict[str, dict[str, int]]) -> int:
    return sum(
        summary.get(queue, {}).get(state, 0)
        for queue in ("inbound", "outbox")
        for state in ("pending", "retry")
    )


def _wait_drained(
    target: Target,
    program_key: str,
    crm: FakeHubSpot,
    timeout: float,
    tick: Callable[[], None],
) -> tuple[float | None, int]:
    """Seconds until nothing of the program is due (inbox and outbox, as the
    program's own key counts them) and the CRM is up again; None on timeout."""
    started = time.monotonic()
    quiet = 0
    due = -1
    with _client(target, program_key) as client:
        while time.monotonic() - started < timeout:
            tick()
            try:
                due = _due(api.call(client, "GET", "/jobs/summary"))
            except (api.ApiError, httpx.HTTPError):
                due = -1
            quiet = quiet + 1 if due == 0 and crm.is_up() else 0
            if quiet >= QUIET_POLLS:
                return time.monotonic() - started, 0
            time.sleep(POLL_SECONDS)
    return None, due


def _observe(
    admin: httpx.Client, program_id: str, target: Target, program_key: str, crm: FakeHubSpot
) -> Observed:
    orders = list(api.every(admin, "/orders", program_id=program_id))
    commissions = list(api.every(admin, "/commissions", program_id=program_id))
    with _client(target, program_key) as client:
        summary = api.call(client, "GET", "/jobs/summary")
    stuck = {
        "inbound events rejected": summary["inbound"].get("rejected", 0),
        "inbound events dead": summary["inbound"].get("dead", 0),
        "outbox messages dead": summary["outbox"].get("dead", 0),
    }
    return Observed(orders=orders, commissions=commissions, contacts=crm.snapshot(), stuck=stuck)


def new_seed() -> int:
    return secrets.randbelow(10**6)
