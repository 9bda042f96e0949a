"""`partnerloop connectors create|list|backfill` as a merchant runs them."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import text

from partnerloop.access import staff
from partnerloop.access.models import StaffUser
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.integrations.models import Connector
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.runtime import Runtime
from tests.conftest import REPO_ROOT, Backend, Server, drain
from tests.factories.connectors import fixture_json
from tests.processes.conftest import PARTNERLOOP, backend_env, run_cli
from tests.support.http import Reply, ScriptedServer

pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PARTNERLOOP, *args],
        env=env,
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _orders_page(ids: list[int], next_url: str | None) -> Reply:
    template = fixture_json("shopify", "docs-example_2026-04_orders_paid.json")["response"]
    orders = [
        dict(
            template,
            id=i,
            financial_status="paid",
            cancelled_at=None,
            updated_at="2026-11-20T10:00:00Z",
        )
        for i in ids
    ]
    headers = {"Content-Type": "application/json"}
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next"'
    return Reply(200, headers, json.dumps({"orders": orders}).encode())


def _program(runtime: Runtime, name: str, currency: str) -> Program:
    with transaction(runtime.sessions) as db:
        return programs.create(
            db,
            name=name,
            currency=currency,
            cookie_days=30,
            allowed_domains=["shop.example.com"],
            commission_type="percentage",
            commission_value="10",
            hold_days=30,
            now=utcnow(),
        ).program


def test_connect_a_shop_and_backfill_it_from_the_command_line(
    backend: Backend, runtime: Runtime
) -> None:
    env = backend_env(backend)
    program = _program(runtime, "CLI shop", "USD")
    shop = ScriptedServer([])
    with shop.running():
        created = _cli(
            "connectors", "create",
            "--program", program.id,
            "--kind", "shopify",
            "--setting", "shop_domain=cli.myshopify.com",
            "--setting", f"api_base_url={shop.url}",
            "--credential", "access_token=shpat_cli",
            env=env,
            stdin="shpss_cli_secret\n",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        webhook_url = created.stdout.strip().splitlines()[-1]
        connector_id = webhook_url.rsplit("/", 1)[-1]
        assert webhook_url.endswith(f"/hooks/{connector_id}")
        assert "shpss_cli_secret" not in created.stdout + created.stderr

        listed = run_cli("connectors", "list", "--program", program.id, env=env)
        assert listed.returncode == 0, listed.stderr
        assert connector_id in listed.stdout
        assert "shop_domain=cli.myshopify.com" in listed.stdout
        assert "shpat_cli" not in listed.stdout  # credentials never shown

        page2 = f"{shop.url}/admin/api/2026-04/orders.json?limit=250&page_info=two"
        shop.replies = [_orders_page([91, 92], page2), Reply(404, {}, b"not found")]
        failed = _cli("connectors", "backfill", connector_id, "--since", "2026-11-01", env=env)
        shop.replies = [_orders_page([93], None)]
        resumed = _cli("connectors", "backfill", connector_id, "--since", "2026-11-01", env=env)

    assert failed.returncode == 1
    assert "run the same command again to resume" in failed.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert "backfill" in resumed.stderr  # the progress display
    assert resumed.stdout.strip() == "resumed, 1 page: 1 new, 0 already received"
    assert shop.received[-1].path == "/admin/api/2026-04/orders.json?limit=250&page_info=two"
    drain(runtime)
    with runtime.sessions() as db:
        ids = (
            db.execute(
                text("SELECT order_id FROM conversions WHERE program_id = :p ORDER BY order_id"),
                {"p": program.id},
            )
            .scalars()
            .all()
        )
    assert list(ids) == ["91", "92", "93"]


def test_a_crm_is_connected_from_the_cli_with_its_webhook_url_and_no_secret_echoed(
    backend: Backend, runtime: Runtime
) -> None:
    env = backend_env(backend)
    program = _program(runtime, "CLI CRM", "EUR")
    created = _cli(
        "connectors", "create",
        "--program", program.id,
        "--kind", "hubspot",
        "--setting", "write_back=lifecyclestage,hs_lead_status",
        "--setting", "deals=on",
        "--credential", "access_token=pat-cli",
        env=env,
        stdin="hubspot-client-secret\n",
    )  # fmt: skip
    salesforce = _cli(
        "connectors", "create",
        "--program", program.id,
        "--kind", "salesforce",
        "--setting", "instance_url=https://acme.my.salesforce.com",
        "--credential", "access_token=00D-cli",
        env=env,
        stdin="\n",
    )  # fmt: skip

    assert created.returncode == 0, created.stderr
    webhook_url = created.stdout.strip().splitlines()[-1]
    connector_id = webhook_url.rsplit("/", 1)[-1]
    assert webhook_url.endswith(f"/hooks/{connector_id}")
    assert "hubspot-client-secret" not in created.stdout + created.stderr
    with runtime.sessions() as db:
        row = db.get_one(Connector, connector_id)
    assert row.settings["write_back"] == ["lifecyclestage", "hs_lead_status"]
    assert row.settings["deals"] == "on"
    assert salesforce.returncode == 0, salesforce.stderr
    assert salesforce.stdout.strip().startswith("con_")  # no webhooks: just its id


def test_create_with_an_unknown_kind_or_bad_setting_fails_clearly(backend: Backend) -> None:
    env = backend_env(backend)
    unknown = _cli(
        "connectors", "create", "--program", "prg_x", "--kind", "bigcommerce", env=env, stdin="s\n"
    )
    malformed = _cli(
        "connectors", "create", "--program", "prg_x", "--kind", "shopify", "--setting", "shop_domain",
        env=env, stdin="s\n",
    )  # fmt: skip
    assert (unknown.returncode, malformed.returncode) == (2, 2)
    assert "Unknown kind 'bigcommerce'" in unknown.stderr
    assert "--setting takes NAME=VALUE" in malformed.stderr


def test_quarantined_events_and_dead_deliveries_are_listed_and_replayed_from_the_cli(
    backend: Backend, runtime: Runtime, server: Server
) -> None:
    from partnerloop.sync import service as sync
    from partnerloop.sync.models import InboundEvent, OutboxMessage
    from tests.factories.connectors import create_connector_api, hook_path
    from tests.factories.programs import create_program_api
    from tests.factories.shopify import SECRET, SHOP, sign

    env = backend_env(backend)
    with server.client() as api:
        program = create_program_api(api, currency="USD")
        shop = create_connector_api(
            api, program["id"], "shopify", secret=SECRET, settings={"shop_domain": SHOP}
        )
        body = b'{"id": 1, "currency": '  # malformed: quarantined by the worker
        api.post(
            hook_path(shop),
            content=body,
            headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": sign(body)},
        ).raise_for_status()
        hook = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "webhook",
                "settings": {"url": "http://127.0.0.1:9/gone"},
            },
        ).json()
    drain(runtime)
    with transaction(runtime.sessions) as db:
        [event] = db.query(InboundEvent).filter_by(program_id=program["id"]).all()
        sync.enqueue(
            db,
            runtime.cipher,
            destination_kind="webhook",
            destination_id=hook["id"],
            topic="conversion.created",
            payload={},
            idempotency_key="cli-dead",
            program_id=program["id"],
            now=utcnow(),
        )
        dead = db.query(OutboxMessage).filter_by(idempotency_key="cli-dead").one()
        dead.state = "dead"
        dead.last_error = "the endpoint answered 410"

    rejected = run_cli(
        "inbound", "list", "--state", "rejected", "--program", program["id"], env=env
    )
    replayed = run_cli("inbound", "replay", event.id, env=env)
    listed = run_cli("deliveries", "list", "--connector", hook["id"], "--state", "dead", env=env)
    redo = run_cli("deliveries", "replay", dead.id, env=env)
    again = run_cli("deliveries", "replay", dead.id, env=env)
    bad_state = run_cli("deliveries", "list", "--state", "lost", env=env)

    assert rejected.returncode == 0, rejected.stderr
    assert event.id in rejected.stdout
    assert "malformed JSON" in rejected.stdout
    assert (replayed.returncode, replayed.stdout.strip()) == (0, f"{event.id}: pending")
    assert listed.returncode == 0, listed.stderr
    assert dead.id in listed.stdout
    assert "410" in listed.stdout
    assert (redo.returncode, redo.stdout.strip()) == (0, f"{dead.id}: pending")
    assert again.returncode == 1  # pending is not replayable
    assert "Only dead or rejected jobs can be replayed" in again.stderr
    assert bad_state.returncode == 1
    assert "state must be one of" in bad_state.stderr
    # Leave nothing due behind: the replayed delivery points at a closed port, and a
    # later test's worker must not pick it up.
    with transaction(runtime.sessions) as db:
        db.get_one(OutboxMessage, dead.id).state = "dead"
    drain(runtime)


def test_a_staff_account_is_created_from_the_cli_with_the_password_on_stdin(
    backend: Backend, runtime: Runtime
) -> None:
    env = backend_env(backend)
    program = _program(runtime, "CLI staff", "EUR")
    email = f"owner-{program.id.lower()}@shop.example"
    password = "a long enough passphrase"
    created = _cli(
        "users", "create", "--email", email, "--role", "owner", "--program", program.id,
        env=env, stdin=password + "\n",
    )  # fmt: skip
    again = _cli(
        "users", "create", "--email", email.upper(), "--role", "analyst",
        env=env, stdin=password + "\n",
    )  # fmt: skip
    bad_role = _cli(
        "users", "create", "--email", "x@shop.example", "--role", "admin",
        env=env, stdin=password + "\n",
    )  # fmt: skip
    short = _cli(
        "users", "create", "--email", "y@shop.example", "--role", "analyst",
        env=env, stdin="short\n",
    )  # fmt: skip

    assert created.returncode == 0, created.stderr
    user_id = created.stdout.strip()
    assert password not in created.stdout + created.stderr
    with runtime.sessions() as db:
        user = db.get_one(StaffUser, user_id)
        opened = staff.authenticate(db, runtime.cipher, email=email, password=password)
    assert (user.role, user.program_id) == ("owner", program.id)
    assert opened is not None
    assert opened.id == user_id
    assert (again.returncode, bad_role.returncode, short.returncode) == (1, 1, 1)
    assert "A staff account with this e-mail exists." in again.stderr
    assert "Unknown role 'admin'" in bad_role.stderr
    assert "at least 12 characters" in short.stderr
