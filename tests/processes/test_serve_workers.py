"""`partnerloop serve --workers 2`: two server processes on one port and one
database, each with its own click writer; every click answered is stored once."""

from __future__ import annotations

import concurrent.futures
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.runtime import Runtime
from partnerloop.tracking.models import Click
from tests.conftest import Backend, free_port
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import BROWSER_UA, create_link_api
from tests.processes.conftest import (
    Processes,
    backend_env,
    last_line,
    run_cli,
    unique,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_two_server_processes_store_every_click_once(
    backend: Backend,
    quiet_queue: Runtime,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = backend_env(backend, PARTNERLOOP_WORKER_IN_PROCESS="false", PARTNERLOOP_PUBLIC_URL=base)
    serve = processes.start(
        "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2", env=env
    )
    created = run_cli("api-key", "create", "--scope", "admin", "--name", unique("w2"), env=env)
    assert created.returncode == 0, created.stderr
    key = last_line(created.stdout)
    wait_ready(base, serve)
    # Both worker processes up (the parent starts them one after the other).
    wait_until(
        lambda: serve.output().count("Application startup complete") >= 2,
        what="two server processes",
    )

    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
    ) as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])

    def click(_: int) -> str:
        # A new connection each time, so the kernel spreads them over both processes.
        response = httpx.get(
            f"{base}/r/{link['code']}", headers={"User-Agent": BROWSER_UA}, timeout=10.0
        )
        assert response.status_code == 302, response.text
        return parse_qs(urlsplit(response.headers["location"]).query)["plclid"][0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        click_ids = list(pool.map(click, range(120)))

    assert len(set(click_ids)) == 120
    with observer() as session:
        stored = set(session.scalars(select(Click.id).where(Click.link_id == link["id"])))
        assert stored == set(click_ids)
        assert session.scalar(select(func.count()).where(Click.link_id == link["id"])) == 120
