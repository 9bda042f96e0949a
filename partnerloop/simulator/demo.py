"""`partnerloop demo`: a working affiliate program on this machine in a minute."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from sqlalchemy import select

from partnerloop.access import service as access
from partnerloop.access.service import Scope
from partnerloop.affiliates import service as affiliates
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.runtime import Runtime
from partnerloop.simulator.traffic import Scenario, run_traffic
from partnerloop.tracking import service as tracking
from partnerloop.tracking.models import Coupon, Link
from partnerloop.web.app import create_app

DEMO_PROGRAM = "partnerloop demo shop"
DEMO_DOMAIN = "demo-shop.example"
DEMO_AFFILIATES = (
    ("ada@affiliates.example", "Ada Lovelace"),
    ("ben@affiliates.example", "Ben Okafor"),
    ("chloe@affiliates.example", "Chloe de Vries"),
)


@dataclass(frozen=True)
class DemoSeed:
    program_id: str
    postback_token: str | None
    admin_key: str
    link_codes: list[str]
    coupons: list[str]


def seed(runtime: Runtime) -> DemoSeed:
    """The demo program, three approved affiliates with links, one coupon. Reused when present."""
    now = utcnow()
    with transaction(runtime.sessions) as session:
        program = session.scalar(select(Program).where(Program.name == DEMO_PROGRAM))
        # The token is only known when it is made; a rerun rotates it to show it again.
        if program is None:
            created = programs.create(
                session,
                name=DEMO_PROGRAM,
                currency="EUR",
                cookie_days=30,
                allowed_domains=[DEMO_DOMAIN],
                commission_type="percentage",
                commission_value="10",
                hold_days=0,
                now=now,
            )
            program, token = created.program, created.postback_token
            # Anyone trying the portal gets in at once (a real program may review).
            program.signup_approval = "auto"
        else:
            token = programs.rotate_postback_token(session, program_id=program.id)
        for position, (email, name) in enumerate(DEMO_AFFILIATES):
            signed = affiliates.sign_up(
                session, runtime.cipher, program_id=program.id, email=email, name=name, now=now
            )
            affiliate = affiliates.approve(
                session,
                runtime.cipher,
                affiliate_id=signed.affiliate.id,
                program_id=program.id,
                now=now,
            )
            if signed.created:
                tracking.create_link(
                    session,
                    program_id=program.id,
                    affiliate_id=affiliate.id,
                    destination_url=f"https://{DEMO_DOMAIN}/products/{position + 1}",
                    now=now,
                )
                if position == 2:
                    tracking.create_coupon(
                        session,
                        program_id=program.id,
                        affiliate_id=affiliate.id,
                        code="CHLOE10",
                        now=now,
                    )
        codes = list(
            session.scalars(
                select(Link.code).where(Link.program_id == program.id).order_by(Link.id)
            )
        )
        coupons = list(session.scalars(select(Coupon.code).where(Coupon.program_id == program.id)))
        key = access.create(session, name="demo admin", scope=Scope.admin, program_id=None, now=now)
        return DemoSeed(program.id, token, key.secret, codes, coupons)


def run_demo(
    runtime: Runtime,
    *,
    host: str,
    port: int,
    traffic: bool,
    console: Console,
    click_socket: Path | None = None,
) -> None:
    """Seed, serve and feed traffic until Ctrl-C. Clicks go to the click store at
    `click_socket` (as `serve` does), or to one in a thread without it."""
    demo = seed(runtime)
    base = f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime, run_worker=True, click_socket=click_socket),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    stop = threading.Event()

    def feed() -> None:
        if not _wait_ready(base, stop):
            return
        _print_banner(console, base, demo, traffic)
        if traffic:
            run_traffic(
                Scenario(
                    base_url=base,
                    api_key=demo.admin_key,
                    program_id=demo.program_id,
                    postback_token=demo.postback_token,
                    link_codes=demo.link_codes,
                    coupons=demo.coupons,
                ),
                stop,
            )

    feeder = threading.Thread(target=feed, name="demo-traffic", daemon=True)
    feeder.start()
    try:
        server.run()
    finally:
        stop.set()
        feeder.join(timeout=5)


def _wait_ready(base: str, stop: threading.Event, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _print_banner(console: Console, base: str, demo: DemoSeed, traffic: bool) -> None:
    def print_line(text: str, **options: object) -> None:
        # soft_wrap: a URL stays on one line whatever the terminal width, so it can be copied.
        console.print(text, soft_wrap=True, **options)  # type: ignore[arg-type]

    print_line(f"\n[bold green]partnerloop demo is running at {base}[/bold green]")
    print_line(f"  admin pages:     {base}/admin/login")
    print_line(
        "                   (make your account first: "
        "partnerloop users create --email <you> --role owner)"
    )
    print_line(f"  affiliate portal: {base}/portal/{demo.program_id}/signup")
    print_line(f"  API docs:        {base}/docs")
    print_line(f"  stats:           {base}/api/v1/stats?program_id={demo.program_id}")
    print_line(f"  program:         {demo.program_id}")
    for code in demo.link_codes:
        print_line(f"  affiliate link:  {base}/r/{code}")
    for coupon in demo.coupons:
        print_line(f"  coupon:          {coupon}")
    if demo.postback_token:
        print_line(
            f"  postback:        {base}/postback?token={demo.postback_token}&order_id=...&amount=..."
        )
    print_line(
        "  simulated traffic: "
        + ("on (clicks, orders, refunds)" if traffic else "off (--no-traffic)")
    )
    print_line(
        f'  try: curl -H "Authorization: Bearer $KEY" "{base}/api/v1/commissions?program_id={demo.program_id}"'
    )
    print_line(
        "  Ctrl-C stops the demo. Admin API key (shown once; export it as KEY for the curl above):"
    )
    print_line(demo.admin_key, highlight=False)
