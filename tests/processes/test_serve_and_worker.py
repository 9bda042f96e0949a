"""`partnerloop serve` and a separate `partnerloop worker`, as deployed on PostgreSQL:
the whole loop over real HTTP between real processes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.runtime import Runtime
from partnerloop.sync.models import InboundEvent
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


def test_serve_and_separate_worker_close_the_loop(
    backend: Backend,
    quiet_queue: Runtime,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    # Given a server without an in-process worker, on the test database, and an admin key
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = backend_env(
        backend,
        PARTNERLOOP_WORKER_IN_PROCESS="false",
        PARTNERLOOP_WORKER_POLL_SECONDS="0.1",
        PARTNERLOOP_PUBLIC_URL=base,
    )
    serve = processes.start("serve", "--host", "127.0.0.1", "--port", str(port), env=env)
    created = run_cli("api-key", "create", "--scope", "admin", "--name", unique("e2e"), env=env)
    assert created.returncode == 0, created.stderr
    key = last_line(created.stdout)
    assert key.startswith("pl_")
    wait_ready(base, serve)

    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
    ) as api:
        # Then it is alive and its database answers
        healthz, readyz = api.get("/healthz"), api.get("/readyz")
        assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
        assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})

        # Given a program paying 10 % and an affiliate approved after signing up
        program = create_program_api(api, commission={"type": "percentage", "value": "10"})
        affiliate = create_affiliate_api(api, program["id"], approve=False)
        assert affiliate["status"] == "pending"
        approved = api.post(f"/api/v1/affiliates/{affiliate['id']}/approve")
        assert (approved.status_code, approved.json()["status"]) == (200, "approved")
        link = create_link_api(
            api, program["id"], affiliate["id"], destination="https://shop.example.com/p/7"
        )
        assert link["url"] == f"{base}/r/{link['code']}"

        # When a shopper clicks the link
        clicked = api.get(f"/r/{link['code']}", headers={"User-Agent": BROWSER_UA})

        # Then they land on the shop with the click id
        assert clicked.status_code == 302, clicked.text
        location = urlsplit(clicked.headers["location"])
        assert (location.scheme, location.netloc, location.path) == (
            "https",
            "shop.example.com",
            "/p/7",
        )
        click_id = parse_qs(location.query)["plclid"][0]
        assert click_id.startswith("clk_")

        # When the shop reports the order by postback
        order_id = unique("order")
        shopper = f"{unique('shopper')}@customers.example"
        accepted = api.get(
            "/postback",
            params={
                "token": program["postback_token"],
                "order_id": order_id,
                "amount": "80.25",
                "click_id": click_id,
                "customer_email": shopper,
            },
        )

        # Then it is stored for the worker, which serve does not run
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "accepted"
        with observer() as db:
            event = db.get(InboundEvent, accepted.json()["event_id"])
            assert event is not None
            assert (event.state, event.attempts) == ("pending", 0)

        # When a worker process runs
        worker = processes.start("worker", env=env)

        # Then the conversion appears with the affiliate's exact commission
        # (10 % of 80.25 is 8.025: half-even to the cent, 8.02)
        def listed() -> list[dict[str, Any]]:
            assert worker.poll() is None, worker.describe()
            response = api.get("/api/v1/conversions", params={"program_id": program["id"]})
            assert response.status_code == 200, response.text
            return list(response.json()["items"])

        items = wait_until(listed, what="the conversion to be listed")
        assert [
            (
                c["order_id"],
                c["amount"],
                c["currency"],
                c["affiliate_id"],
                c["attribution"],
                c["click_id"],
                c["source"],
            )
            for c in items
        ] == [(order_id, "80.25", "EUR", affiliate["id"], "click", click_id, "postback")]
        assert [
            (c["affiliate_id"], c["order_id"], c["amount"], c["currency"], c["state"])
            for c in items[0]["commissions"]
        ] == [(affiliate["id"], order_id, "8.02", "EUR", "pending")]
        commissions = api.get("/api/v1/commissions", params={"program_id": program["id"]})
        assert [(c["id"], c["amount"]) for c in commissions.json()["items"]] == [
            (items[0]["commissions"][0]["id"], "8.02")
        ]
        stats = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert (stats["clicks"], stats["conversions"], stats["revenue"]) == (1, 1, "80.25")
        assert stats["commissions"]["pending"] == "8.02"
    assert serve.poll() is None, serve.describe()
    # And no log line of either process carries personal data
    logged = serve.output() + worker.output()
    assert [email for email in (affiliate["email"], shopper) if email in logged] == []
