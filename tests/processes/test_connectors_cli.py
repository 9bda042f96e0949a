"""`partnerloop connectors create|list|backfill` as a merchant runs them."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import text

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.programs import service as programs
from partnerloop.runtime import Runtime
from tests.conftest import REPO_ROOT, Backend, drain
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


def test_connect_a_shop_and_backfill_it_from_the_command_line(
    backend: Backend, runtime: Runtime
) -> None:
    env = backend_env(backend)
    with transaction(runtime.sessions) as db:
        program = programs.create(
            db,
            name="CLI shop",
            currency="USD",
            cookie_days=30,
            allowed_domains=["shop.example.com"],
            commission_type="percentage",
            commission_value="10",
            hold_days=30,
            now=utcnow(),
        ).program
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
