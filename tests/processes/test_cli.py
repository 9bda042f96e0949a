"""The `partnerloop` command on a fresh data directory with the default SQLite database."""

from __future__ import annotations

import re
import secrets
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from partnerloop.access import service as access
from partnerloop.access.models import ApiKey
from partnerloop.access.service import Scope
from partnerloop.affiliates import service as affiliates
from partnerloop.affiliates.models import Affiliate
from partnerloop.analytics.models import DailyStats
from partnerloop.cli import app
from partnerloop.commissions import service as commissions_service
from partnerloop.commissions.models import Commission
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.ids import new_id
from partnerloop.core.settings import SETTINGS_DOC, Settings
from partnerloop.orders import service as orders
from partnerloop.programs import service as programs
from partnerloop.runtime import Runtime, build_runtime
from partnerloop.tracking import service as tracking
from tests.processes.conftest import clean_env, last_line, run_cli, unique

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class DataDir:
    path: Path
    env: dict[str, str]

    def runtime(self) -> Runtime:
        return build_runtime(Settings.from_env({"PARTNERLOOP_DATA_DIR": str(self.path)}))


@pytest.fixture
def fresh(tmp_path: Path) -> DataDir:
    """A data directory that does not exist yet; no database URL and no key in the environment."""
    path = tmp_path / "data"
    return DataDir(path, clean_env(PARTNERLOOP_DATA_DIR=str(path)))


@pytest.fixture
def initialised(fresh: DataDir) -> DataDir:
    done = run_cli("init", env=fresh.env)
    assert done.returncode == 0, done.stderr
    return fresh


@pytest.fixture
def runtime_of(initialised: DataDir) -> Iterator[Runtime]:
    built = initialised.runtime()
    try:
        yield built
    finally:
        built.close()


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_init_twice_creates_once_and_keeps_the_key(fresh: DataDir) -> None:
    # When init runs on a fresh data directory
    first = run_cli("init", env=fresh.env)

    # Then it creates the key (owner-only) and the schema, and says so
    key_path = fresh.path / "secret.key"
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"- created the secret key {key_path} (mode 0600): back it up",
        "- brought the database schema up to date",
        f"database: sqlite:///{fresh.path / 'partnerloop.db'}",
    ]
    key_text = key_path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", key_text)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    # When it runs again
    second = run_cli("init", env=fresh.env)

    # Then there is nothing to do and the key is untouched
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        "- nothing to do: already initialised",
        f"database: sqlite:///{fresh.path / 'partnerloop.db'}",
    ]
    assert key_path.read_text() == key_text
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_api_key_create_prints_a_working_key_alone_on_the_last_line(
    initialised: DataDir, runtime_of: Runtime
) -> None:
    # When an admin key is created
    created = run_cli("api-key", "create", "--scope", "admin", "--name", "ops", env=initialised.env)

    # Then the key is the last line of stdout, alone, and it authenticates as admin
    assert created.returncode == 0, created.stderr
    key = last_line(created.stdout)
    assert created.stdout == key + "\n"
    with runtime_of.sessions() as db:
        principal = access.authenticate(db, presented=key)
        stored = db.get_one(ApiKey, principal.key_id)
        assert (principal.scope, principal.program_id, stored.name) == (Scope.admin, None, "ops")
        # Stored hashed: the secret itself (all after the key id; it may hold "_")
        # is nowhere in the row
        assert key.split("_", 3)[3] not in stored.secret_hash
    assert created.stderr.strip() == f"created {principal.key_id} (scope admin, all programs)"


def test_api_key_create_with_a_bad_scope_fails_clearly_and_creates_nothing(
    initialised: DataDir, runtime_of: Runtime
) -> None:
    # When a key is asked for with a scope that does not exist
    refused = run_cli("api-key", "create", "--scope", "root", env=initialised.env)

    # Then the command fails, says which scopes exist, prints no key and stores none
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip() == "Unknown scope 'root'; use read, write or admin."
    with runtime_of.sessions() as db:
        assert db.scalar(select(func.count()).select_from(ApiKey)) == 0


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--port", "0"],
        ["worker"],
        ["api-key", "create", "--scope", "admin"],
        ["affiliates", "list"],
        ["commissions", "list"],
    ],
    ids=lambda command: command[0],
)
def test_commands_on_an_uninitialised_data_dir_ask_for_init(
    fresh: DataDir, command: list[str]
) -> None:
    # When a command runs before `partnerloop init`
    result = run_cli(*command, env=fresh.env, timeout=20)

    # Then it exits with 2, tells the user to run init, and creates nothing
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"No secret key at {fresh.path / 'secret.key'}. Run `partnerloop init` first "
        "(or set PARTNERLOOP_SECRET_KEY)."
    )
    assert not fresh.path.exists()


def test_uninitialised_data_dir_with_a_key_in_the_environment_asks_for_init(
    fresh: DataDir,
) -> None:
    # Given the key in the environment (several machines sharing a database), no init yet
    env = {**fresh.env, "PARTNERLOOP_SECRET_KEY": secrets.token_hex(32)}

    # When a command runs
    result = run_cli("affiliates", "list", env=env, timeout=20)

    # Then it says what to do instead of crashing
    assert (result.returncode, "Traceback" in result.stderr) == (2, False)
    assert "Run `partnerloop init` first" in result.stderr
    assert not fresh.path.exists()


@dataclass(frozen=True)
class Seeded:
    program_id: str
    pending_id: str
    rejected_id: str
    email: str
    name: str


def seed(runtime: Runtime) -> Seeded:
    """A program paying 10 %, a pending affiliate and a rejected one (committed)."""
    now = utcnow()
    email = f"{unique('cli')}@partners.example"
    name = f"Ada {secrets.token_hex(3)}"
    with transaction(runtime.sessions) as db:
        program = programs.create(
            db,
            name="CLI shop",
            currency="EUR",
            cookie_days=30,
            allowed_domains=["shop.example.com"],
            commission_type="percentage",
            commission_value="10",
            hold_days=30,
            now=now,
        ).program
        pending = affiliates.sign_up(
            db, runtime.cipher, program_id=program.id, email=email, name=name, now=now
        ).affiliate
        rejected = affiliates.sign_up(
            db,
            runtime.cipher,
            program_id=program.id,
            email=f"{unique('rej')}@partners.example",
            name="Rejected One",
            now=now,
        ).affiliate
        affiliates.reject(db, runtime.cipher, affiliate_id=rejected.id, program_id=None, now=now)
    return Seeded(program.id, pending.id, rejected.id, email, name)


def rollup(runtime: Runtime, program_id: str) -> dict[str, int]:
    with runtime.sessions() as db:
        pending, approved, declined = db.execute(
            select(
                func.sum(DailyStats.commission_pending_minor),
                func.sum(DailyStats.commission_approved_minor),
                func.sum(DailyStats.commission_declined_minor),
            ).where(DailyStats.program_id == program_id)
        ).one()
    return {"pending": int(pending), "approved": int(approved), "declined": int(declined)}


def status_of(runtime: Runtime, affiliate_id: str) -> str:
    with runtime.sessions() as db:
        return db.get_one(Affiliate, affiliate_id).status


def test_affiliates_and_commissions_commands(initialised: DataDir, runtime_of: Runtime) -> None:
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}

    def cli(label: str, *args: str) -> subprocess.CompletedProcess[str]:
        outputs[label] = run_cli(*args, env=initialised.env)
        return outputs[label]

    # Given a pending affiliate and a rejected one
    seeded = seed(runtime_of)

    # When pending affiliates are listed
    listed = cli(
        "affiliates list",
        "affiliates",
        "list",
        "--program",
        seeded.program_id,
        "--status",
        "pending",
    )

    # Then the pending one is shown, decrypted, and only that one
    assert listed.returncode == 0, listed.stderr
    assert table_rows(listed.stdout) == [
        [seeded.pending_id, seeded.name, seeded.email, "pending", seeded.program_id]
    ]

    # When the pending affiliate is approved from the command line
    approved = cli("affiliates approve", "affiliates", "approve", seeded.pending_id)

    # Then it is approved in the database
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"{seeded.pending_id}: approved"
    assert status_of(runtime_of, seeded.pending_id) == "approved"

    # When an unknown affiliate is approved
    unknown_affiliate = new_id("affiliate")
    missing = cli("approve unknown", "affiliates", "approve", unknown_affiliate)

    # Then it fails with a reason, and the other affiliates are as they were
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.strip() == f"No affiliate {unknown_affiliate}."
    assert status_of(runtime_of, seeded.rejected_id) == "rejected"

    # Given the approved affiliate's coupon brought an order of 100.05, and another order
    # whose commission was declined
    now = utcnow()
    order_id, declined_order_id = unique("order"), unique("order")
    with transaction(runtime_of.sessions) as db:
        coupon = tracking.create_coupon(
            db,
            program_id=seeded.program_id,
            affiliate_id=seeded.pending_id,
            code=f"ADA{secrets.token_hex(3)}",
            now=now,
        )
        commission_ids = []
        for order, amount_minor in ((order_id, 10005), (declined_order_id, 5000)):
            recorded = orders.record_conversion(
                db,
                runtime_of.cipher,
                orders.OrderInput(
                    program_id=seeded.program_id,
                    order_id=order,
                    amount_minor=amount_minor,
                    currency="EUR",
                    source="api",
                    coupon_code=coupon.code,
                ),
                now=now,
            )
            commission_ids += [c.id for c in recorded.commissions]
        commission_id, declined_id = commission_ids
        commissions_service.decline(
            db, runtime_of.cipher, commission_id=declined_id, program_id=None, now=now
        )

    # When commissions are listed
    listed_commissions = cli(
        "commissions list", "commissions", "list", "--program", seeded.program_id
    )

    # Then both are there: 10 % of 100.05 is 10.005, half-even 10.00
    assert listed_commissions.returncode == 0, listed_commissions.stderr
    assert sorted(r[:5] for r in table_rows(listed_commissions.stdout)) == sorted(
        [
            [commission_id, seeded.pending_id, order_id, "10.00 EUR", "pending"],
            [declined_id, seeded.pending_id, declined_order_id, "5.00 EUR", "declined"],
        ]
    )

    # When the pending one is approved from the command line
    approved_commission = cli("commissions approve", "commissions", "approve", commission_id)

    # Then it is approved in the database and in the rollup
    assert approved_commission.returncode == 0, approved_commission.stderr
    assert approved_commission.stdout.strip() == f"{commission_id}: approved"
    with runtime_of.sessions() as db:
        stored = db.get_one(Commission, commission_id)
        assert (stored.state, stored.amount_minor) == ("approved", 1000)
        assert stored.approved_at is not None
    assert rollup(runtime_of, seeded.program_id) == {
        "pending": 0,
        "approved": 1000,
        "declined": 500,
    }
    by_state = cli(
        "commissions list approved",
        "commissions",
        "list",
        "--program",
        seeded.program_id,
        "--state",
        "approved",
    )
    assert [r[:5] for r in table_rows(by_state.stdout)] == [
        [commission_id, seeded.pending_id, order_id, "10.00 EUR", "approved"]
    ]

    # When a declined commission or an unknown one is approved
    refused = cli("commissions approve declined", "commissions", "approve", declined_id)
    unknown_commission = new_id("commission")
    missing_commission = cli(
        "commissions approve unknown", "commissions", "approve", unknown_commission
    )

    # Then both fail with the reason, and nothing moved
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.strip() == "A declined commission cannot become approved."
    assert (missing_commission.returncode, missing_commission.stdout) == (1, "")
    assert missing_commission.stderr.strip() == f"No commission {unknown_commission}."
    with runtime_of.sessions() as db:
        assert db.get_one(Commission, declined_id).state == "declined"
    assert rollup(runtime_of, seeded.program_id) == {
        "pending": 0,
        "approved": 1000,
        "declined": 500,
    }

    # And the affiliate's e-mail appears where it is meant to (the list) and nowhere else
    assert [
        label for label, result in outputs.items() if seeded.email in result.stdout + result.stderr
    ] == ["affiliates list"]


HELP_COMMANDS = [
    ["init"],
    ["serve"],
    ["worker"],
    ["demo"],
    ["settings"],
    ["api-key"],
    ["api-key", "create"],
    ["affiliates"],
    ["affiliates", "list"],
    ["affiliates", "approve"],
    ["commissions"],
    ["commissions", "list"],
    ["commissions", "approve"],
    ["connectors"],
    ["connectors", "create"],
    ["connectors", "list"],
    ["connectors", "backfill"],
    ["users"],
    ["users", "create"],
    ["report"],
    ["report", "send"],
    ["deliveries"],
    ["deliveries", "list"],
    ["deliveries", "replay"],
    ["inbound"],
    ["inbound", "list"],
    ["inbound", "replay"],
]


def test_every_command_has_help(fresh: DataDir) -> None:
    # When the installed command is asked for --help
    top = run_cli("--help", env=fresh.env)

    # Then it lists every command
    assert (top.returncode, top.stderr) == (0, "")
    assert [
        c
        for c in (
            "init",
            "serve",
            "worker",
            "demo",
            "settings",
            "api-key",
            "affiliates",
            "commissions",
        )
        if f"│ {c} " not in top.stdout
    ] == []

    # When each command is asked for --help (in this process: a start costs a second each)
    runner = CliRunner()
    results = [
        (command, runner.invoke(app, [*command, "--help"], env=fresh.env, prog_name="partnerloop"))
        for command in HELP_COMMANDS
    ]

    # Then each answers 0 with its usage line, and none touched the data directory
    for command, result in results:
        assert result.exit_code == 0, (command, result.output)
        assert " ".join(["Usage: partnerloop", *command]) in result.output, (command, result.output)
    assert not fresh.path.exists()


def test_settings_lists_every_setting(fresh: DataDir) -> None:
    shown = run_cli("settings", env=fresh.env)

    assert shown.returncode == 0, shown.stderr
    assert [name for name in SETTINGS_DOC if name not in shown.stdout] == []
