"""`partnerloop simulate`: rehearse a day, a peak or an outage before going live."""

from __future__ import annotations

import json
import secrets
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from partnerloop.simulator.fake_crm import OUTAGE_MODES, FakeHubSpot
from partnerloop.simulator.fake_shop import FakeShop, ShopFactory
from partnerloop.simulator.instance import InstanceError, LocalInstance, Target, wait_healthy
from partnerloop.simulator.report import as_json, print_outcome
from partnerloop.simulator.run import Outcome, new_seed, run_scenario
from partnerloop.simulator.scenarios import DESCRIPTIONS, NAMES, Knobs, build
from partnerloop.simulator.setup import ApiError

HELP = (
    "Drive a partnerloop instance through scenarios with a fake Shopify shop and a fake "
    "HubSpot CRM (both on 127.0.0.1), then check every order, commission and CRM contact. "
    "Scenarios: "
    + "; ".join(f"{name}: {text}" for name, text in DESCRIPTIONS.items())
    + ". Exits 1 when an invariant fails. Without --url it starts its own instance on a "
    "temporary SQLite database."
)


def simulate(
    scenarios: Annotated[
        list[str] | None,
        typer.Argument(help=f"Scenarios to run, in order: {', '.join(NAMES)}. Default: normal."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="A running instance to drive (it must reach the fake CRM on 127.0.0.1). "
            "Leave out to start a local one."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Admin API key of the instance at --url (all programs).",
            envvar="PARTNERLOOP_SIMULATE_API_KEY",
        ),
    ] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="Start a throwaway instance on a temporary SQLite database (default)."
        ),
    ] = False,
    keep_data: Annotated[
        bool, typer.Option(help="Keep the local instance's data directory (its path is printed).")
    ] = False,
    seed: Annotated[
        int | None, typer.Option(help="Makes the run reproducible (printed when left out).")
    ] = None,
    orders: Annotated[int, typer.Option(min=1, help="Orders per scenario.")] = Knobs.orders,
    rate: Annotated[
        float, typer.Option(min=0.1, help="Orders a second (peak: ten times this).")
    ] = Knobs.rate,
    affiliates: Annotated[
        int, typer.Option(min=1, help="Affiliates in the program.")
    ] = Knobs.affiliates,
    failed_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="failed-payments: share of payments that fail.")
    ] = Knobs.failed_share,
    copies: Annotated[
        int, typer.Option(min=2, max=10, help="duplicates: most deliveries of one webhook.")
    ] = Knobs.copies,
    outage_seconds: Annotated[
        float, typer.Option(min=0.0, help="crm-outage: how long the CRM is down.")
    ] = Knobs.outage_seconds,
    outage_mode: Annotated[
        str, typer.Option(help="crm-outage: refused (port closed) or 503.")
    ] = Knobs.outage_mode,
    storm_seconds: Annotated[
        float, typer.Option(min=0.0, help="429-storm: how long every CRM call gets a 429.")
    ] = Knobs.storm_seconds,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Orders in flight at once.")] = 8,
    drain_timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait for the instance to finish a scenario.")
    ] = 120.0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON to this file.")
    ] = None,
) -> None:
    console = Console(soft_wrap=True)  # one line per verdict, whatever the width
    names = scenarios or ["normal"]
    unknown = [name for name in names if name not in NAMES]
    if unknown or outage_mode not in OUTAGE_MODES:
        console.print(
            f"[red]Unknown scenario {', '.join(unknown)}; known: {', '.join(NAMES)}.[/red]"
            if unknown
            else f"[red]--outage-mode is one of {', '.join(OUTAGE_MODES)}.[/red]"
        )
        raise typer.Exit(2)
    if url and local:
        console.print("[red]Give --url (and --api-key) or --local, not both.[/red]")
        raise typer.Exit(2)
    if url and not api_key:
        console.print("[red]--url needs --api-key (an admin key of that instance).[/red]")
        raise typer.Exit(2)
    knobs = Knobs(
        orders=orders,
        rate=rate,
        affiliates=affiliates,
        failed_share=failed_share,
        copies=copies,
        outage_seconds=outage_seconds,
        outage_mode=outage_mode,
        storm_seconds=storm_seconds,
    )
    target = Target(url.rstrip("/"), api_key) if url and api_key else None
    code = simulate_run(
        names,
        knobs,
        target=target,
        seed=new_seed() if seed is None else seed,
        keep_data=keep_data,
        concurrency=concurrency,
        drain_timeout=drain_timeout,
        json_path=json_path,
        console=console,
    )
    raise typer.Exit(code)


def simulate_run(
    names: list[str],
    knobs: Knobs,
    *,
    target: Target | None,
    seed: int,
    console: Console,
    keep_data: bool = False,
    concurrency: int = 8,
    drain_timeout: float = 120.0,
    json_path: Path | None = None,
    shop_factory: ShopFactory = FakeShop,
    crm: FakeHubSpot | None = None,
) -> int:
    """Runs the scenarios; 0 when every invariant held, 1 when one failed, 2 when
    the instance could not be used at all."""
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        fake_crm = crm or FakeHubSpot(token=f"pat-sim-{secrets.token_hex(12)}")
        stack.callback(fake_crm.stop)
        try:
            if target is None:
                instance = stack.enter_context(LocalInstance(keep=keep_data))
                console.print("starting a local instance on a temporary SQLite database ...")
                target = instance.start()
                console.print(f"local instance at {target.url} (data: {instance.data_dir})")
            else:
                wait_healthy(target.url, timeout=10.0)
            console.print(f"fake CRM (HubSpot API) at {fake_crm.url}; seed {seed}")
            for name in names:
                outcome = run_scenario(
                    build(name, knobs),
                    target=target,
                    crm=fake_crm,
                    seed=seed,
                    drain_timeout=drain_timeout,
                    concurrency=concurrency,
                    console=console,
                    shop_factory=shop_factory,
                )
                print_outcome(console, outcome)
                outcomes.append(outcome)
        except (InstanceError, ApiError) as error:
            console.print(f"[red]{error}[/red]", soft_wrap=True)
            return 2
    if json_path is not None:
        json_path.write_text(json.dumps([as_json(o) for o in outcomes], indent=2) + "\n")
    failed = [o.scenario.name for o in outcomes if not o.passed]
    if failed:
        console.print(f"[red]FAILED: {', '.join(failed)}[/red]")
        return 1
    console.print(f"[green]all invariants held ({len(outcomes)} scenario(s))[/green]")
    return 0
