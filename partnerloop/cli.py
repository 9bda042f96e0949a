"""`partnerloop ...`: the command line. Thin: parse, call a service, print."""

from __future__ import annotations

import getpass
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from partnerloop.access import service as access
from partnerloop.affiliates import service as affiliates
from partnerloop.commissions import service as commissions
from partnerloop.core import logs, migrate, priority
from partnerloop.core.clock import utcnow
from partnerloop.core.db import make_engine, transaction
from partnerloop.core.errors import DomainError
from partnerloop.core.money import format_amount
from partnerloop.core.settings import SETTINGS_DOC, Settings, SettingsError, ensure_secret_key
from partnerloop.runtime import Runtime, build_runtime
from partnerloop.simulator import command as simulate_command
from partnerloop.web.store import STORE_SOCKET_ENV, StoreProcess

app = typer.Typer(
    help="partnerloop: self-hosted affiliate platform. Settings come from PARTNERLOOP_* "
    "environment variables (see `partnerloop settings`).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
api_key_app = typer.Typer(help="Create and manage API keys.", no_args_is_help=True)
affiliates_app = typer.Typer(help="List and approve affiliates.", no_args_is_help=True)
commissions_app = typer.Typer(help="List and approve commissions.", no_args_is_help=True)
connectors_app = typer.Typer(
    help="Connect shops (Shopify, WooCommerce, Magento, Stripe) and pull their history.",
    no_args_is_help=True,
)
app.add_typer(api_key_app, name="api-key")
app.add_typer(affiliates_app, name="affiliates")
app.add_typer(commissions_app, name="commissions")
deliveries_app = typer.Typer(
    help="Messages to outgoing connectors (webhooks, CRMs): list and replay.",
    no_args_is_help=True,
)
inbound_app = typer.Typer(
    help="Received events (shop webhooks, postbacks): list quarantined ones and replay.",
    no_args_is_help=True,
)
users_app = typer.Typer(
    help="Staff accounts for the admin pages (roles owner, manager, finance, analyst).",
    no_args_is_help=True,
)
app.add_typer(connectors_app, name="connectors")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(inbound_app, name="inbound")
app.add_typer(users_app, name="users")
report_app = typer.Typer(
    help="The weekly report of a program (the worker e-mails it every Monday from 06:00 UTC).",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")
app.command(help=simulate_command.HELP)(simulate_command.simulate)

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


def _runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or _settings()
    try:
        runtime = build_runtime(settings)
    except SettingsError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    if settings.is_sqlite and not _sqlite_file_exists(settings.database_url):
        # Connecting would create an empty file; say what to do instead.
        err.print("[red]There is no database yet. Run `partnerloop init` first.[/red]")
        raise typer.Exit(2)
    try:
        current = migrate.is_current(runtime.engine)
    except SQLAlchemyError as error:
        err.print(
            f"[red]Cannot reach the database at {_redacted(settings.database_url)} "
            f"({type(getattr(error, 'orig', None) or error).__name__}). Check "
            "PARTNERLOOP_DATABASE_URL, or run `partnerloop init`.[/red]"
        )
        raise typer.Exit(2) from None
    if not current:
        err.print(
            "[red]The database schema is missing or out of date. Run `partnerloop init` first.[/red]"
        )
        raise typer.Exit(2)
    return runtime


def _sqlite_file_exists(url: str) -> bool:
    path = url.split("///", 1)[-1]
    return path in ("", ":memory:") or Path(path).exists()


def initialise(settings: Settings) -> list[str]:
    """Data dir, secret key, schema. Safe to run any number of times."""
    done = []
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if ensure_secret_key(settings):
        done.append(f"created the secret key {settings.secret_key_path} (mode 0600): back it up")
    engine = make_engine(settings.database_url)
    try:
        if not migrate.is_current(engine):
            migrate.upgrade(engine)
            done.append("brought the database schema up to date")
    finally:
        engine.dispose()
    return done


@app.command()
def init() -> None:
    """Create the data directory, the secret key and the database schema (idempotent)."""
    settings = _settings()
    done = initialise(settings)
    for line in done or ["nothing to do: already initialised"]:
        out.print(f"- {line}")
    out.print(f"database: {_redacted(settings.database_url)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port (all sending clicks and webhooks to one store "
            "process; on SQLite each with its own in-process worker). 1 is right for most "
            "machines.",
        ),
    ] = 1,
) -> None:
    """Run the web server (API, redirects, postbacks). On SQLite it also runs the worker."""
    import uvicorn

    from partnerloop.web.front import ClickFront

    settings = _settings()
    logs.configure(settings.log_level)
    runtime = _runtime(settings)  # checks the schema before anything listens
    # uvicorn's own X-Forwarded-* rewriting only when we trust a proxy, and then for
    # any peer, as PARTNERLOOP_TRUST_FORWARDED_FOR says: one setting decides, and the
    # click path does not pay for a header scan it would ignore.
    proxy = {
        "proxy_headers": settings.trust_forwarded_for,
        "forwarded_allow_ips": "*" if settings.trust_forwarded_for else None,
    }
    common = {"host": host, "port": port, "log_level": settings.log_level, "access_log": False}
    with _store(settings) as store:
        if workers == 1:
            from partnerloop.web.app import create_app

            app_ = create_app(
                runtime, click_socket=store.socket_path if store else None, settle_heap=True
            )
            uvicorn.run(app_, http=ClickFront, **common, **proxy)  # type: ignore[arg-type]
            return
        runtime.close()  # each worker process builds its own
        if store is not None:  # every worker process sends its clicks to the one store
            os.environ[STORE_SOCKET_ENV] = str(store.socket_path)
        uvicorn.run(
            "partnerloop.web.asgi:app_from_environment",
            factory=True,
            workers=workers,
            http="partnerloop.web.front:ClickFront",
            **common,  # type: ignore[arg-type]
            **proxy,  # type: ignore[arg-type]
        )


@contextmanager
def _store(settings: Settings) -> Iterator[StoreProcess | None]:
    """The store for the server run inside (see _start_store), stopped
    after it: once the redirects have drained, so their clicks go in."""
    store = _start_store(settings)
    # uvicorn shuts down on SIGTERM, then raises it again with the handler it found:
    # this one, so the store is stopped in order and the command exits 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        yield store
    finally:
        signal.signal(signal.SIGTERM, previous)
        if store is not None:
            store.stop()


def _start_store(settings: Settings) -> StoreProcess | None:
    """serve's store process (clicks and webhooks) (PARTNERLOOP_CLICK_WRITER=process), or None when
    each server process writes its clicks from a thread."""
    in_memory = settings.database_url in ("sqlite://", "sqlite:///:memory:")
    if settings.click_writer != "process" or in_memory:  # a memory database is one process's
        return None
    try:
        store = StoreProcess()  # its socket's directory, under the temp dir
    except OSError as error:
        err.print(f"[red]Cannot create the store's socket directory: {error}[/red]")
        raise typer.Exit(1) from None
    try:
        store.start()
    except (OSError, RuntimeError) as error:
        store.stop()
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    return store


@app.command()
def worker() -> None:
    """Process the inbox and outbox (run any number of these on PostgreSQL).

    Runs at a lower CPU priority than `serve` (PARTNERLOOP_WORKER_NICE, default 10),
    so on a shared machine a burst of webhooks is answered first and drained after.
    """
    import threading

    settings = _settings()
    logs.configure(settings.log_level)
    if settings.worker_nice:
        os.nice(settings.worker_nice)
        priority.lower_own_autogroup(settings.worker_nice)
    runtime = _runtime(settings)
    priority.lower_database_sessions(runtime.engine, settings.worker_nice)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    job_worker = runtime.make_worker()
    err.print(f"worker {job_worker.worker_id} running; Ctrl-C to stop")
    job_worker.run_forever(stop)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port for the demo server.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    traffic: Annotated[
        bool, typer.Option("--traffic/--no-traffic", help="Feed simulated clicks and orders.")
    ] = True,
) -> None:
    """Initialise, seed a demo program, start the server and feed it simulated traffic."""
    from partnerloop.simulator.demo import run_demo

    settings = _settings()
    logs.configure(settings.log_level)
    initialise(settings)
    runtime = _runtime(settings)
    with _store(settings) as store:  # as serve does
        run_demo(
            runtime,
            host=host,
            port=port,
            traffic=traffic,
            console=out,
            click_socket=store.socket_path if store else None,
        )


@app.command("settings")
def show_settings() -> None:
    """List every setting, its default and what it does."""
    table = Table("variable", "default", "meaning")
    for name, (default, meaning) in SETTINGS_DOC.items():
        table.add_row(name, default, meaning)
    out.print(table)


@api_key_app.command("create")
def api_key_create(
    scope: Annotated[str, typer.Option(help="read, write or admin.")] = "admin",
    program: Annotated[str | None, typer.Option(help="Bind the key to this program id.")] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""
    runtime = _runtime()
    try:
        with transaction(runtime.sessions) as session:
            if program is not None:
                from partnerloop.programs import service as programs

                programs.get_or_raise(session, program)
            created = access.create(
                session,
                name=name,
                scope=access.parse_scope(scope),
                program_id=program,
                now=utcnow(),
            )
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    err.print(
        f"created {created.key.id} (scope {scope}, {'program ' + program if program else 'all programs'})"
    )
    sys.stdout.write(created.secret + "\n")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The staff member's e-mail (their login).")],
    role: Annotated[
        str,
        typer.Option(
            help="owner (everything), manager (affiliates, commissions, connectors), finance "
            "(commissions, payouts; reads the rest), analyst (reads only)."
        ),
    ],
    program: Annotated[
        str | None, typer.Option(help="Only this program (default: every program).")
    ] = None,
) -> None:
    """Create a staff account. The password is read from stdin (at least 12
    characters; never an argument, so it stays out of shell history); the new
    account's id is printed."""
    from partnerloop.access import staff

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            err.print("[red]The passwords differ.[/red]")
            raise typer.Exit(1)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    runtime = _runtime()
    try:
        with transaction(runtime.sessions) as session:
            if program is not None:
                from partnerloop.programs import service as programs

                programs.get_or_raise(session, program)
            user = staff.create(
                session,
                runtime.cipher,
                staff.NewStaff(email=email, role=role, password=password, program_id=program),
                now=utcnow(),
            )
            user_id = user.id
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    err.print(f"created {user_id} ({role}, {'program ' + program if program else 'every program'})")
    sys.stdout.write(user_id + "\n")


@affiliates_app.command("list")
def affiliates_list(
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
    status: Annotated[
        str | None, typer.Option(help="pending, approved, rejected or suspended.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """List affiliates (decrypted for you; e-mails are never stored in plaintext)."""
    runtime = _runtime()
    table = Table("id", "name", "email", "status", "programs")
    try:
        with runtime.sessions() as session:
            for row in affiliates.list_affiliates(
                session, program_id=program, status=status, after=None, limit=limit
            ):
                view = affiliates.view(session, runtime.cipher, row)
                table.add_row(
                    view.id, view.name, view.email, view.status, ", ".join(view.program_ids)
                )
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    out.print(table)


@affiliates_app.command("approve")
def affiliates_approve(affiliate_id: str) -> None:
    """Approve an affiliate so they can get links and earn commissions."""
    runtime = _runtime()
    try:
        with transaction(runtime.sessions) as session:
            row = affiliates.approve(
                session, runtime.cipher, affiliate_id=affiliate_id, program_id=None, now=utcnow()
            )
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    out.print(f"{row.id}: {row.status}")


@commissions_app.command("list")
def commissions_list(
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
    affiliate: Annotated[str | None, typer.Option(help="Only this affiliate.")] = None,
    state: Annotated[
        str | None, typer.Option(help="pending, approved, paid, declined or reversed.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """List commissions."""
    runtime = _runtime()
    table = Table("id", "affiliate", "order", "amount", "state", "hold until")
    try:
        with runtime.sessions() as session:
            rows = commissions.list_commissions(
                session,
                program_id=program,
                affiliate_id=affiliate,
                state=state,
                created_from=None,
                created_to=None,
                after=None,
                limit=limit,
            )
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    for row in rows:
        table.add_row(
            row.id,
            row.affiliate_id,
            row.order_id,
            f"{format_amount(row.amount_minor, row.currency)} {row.currency}",
            row.state,
            row.hold_until.strftime("%Y-%m-%d"),
        )
    out.print(table)


@commissions_app.command("approve")
def commissions_approve(commission_id: str) -> None:
    """Approve a pending commission before its hold period ends."""
    runtime = _runtime()
    try:
        with transaction(runtime.sessions) as session:
            row = commissions.approve(
                session, runtime.cipher, commission_id=commission_id, program_id=None, now=utcnow()
            )
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    out.print(f"{row.id}: {row.state}")


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, given = value.partition("=")
        if not sep or not name:
            err.print(f"[red]{option} takes NAME=VALUE, not {value!r}.[/red]")
            raise typer.Exit(2)
        pairs[name.strip()] = given
    return pairs


# Kinds whose secret partnerloop makes and shows once (the others keep what was given).
SIGNING_KINDS = ("webhook",)


@connectors_app.command("create")
def connectors_create(
    program: Annotated[str, typer.Option(help="The program the connector belongs to.")],
    kind: Annotated[
        str,
        typer.Option(
            help="shopify, woocommerce, magento, stripe (shops); hubspot, salesforce, "
            "pipedrive (CRMs); webhook (outgoing)."
        ),
    ],
    setting: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VALUE, repeatable: shop_domain (shopify), store_url (woocommerce), "
            "base_url (magento), api_base_url and pull_every_minutes (shops), url and "
            "events=a,b (webhook); CRMs: instance_url (salesforce), company_domain "
            "(pipedrive), deals=on, write_back=a,b (CRM fields written back to the shop). "
            "See the README for every setting."
        ),
    ] = None,
    credential: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VALUE, repeatable, stored encrypted: access_token (shopify, magento, "
            "hubspot, salesforce), consumer_key and consumer_secret (woocommerce), api_key "
            "(stripe), api_token (pipedrive); OAuth apps: refresh_token, client_id, "
            "client_secret."
        ),
    ] = None,
) -> None:
    """Connect a shop or a CRM, or add an outgoing webhook endpoint.

    Reads the secret from stdin (never an argument, so it stays out of shell
    history): a shop's webhook signing secret, HubSpot's app client secret,
    Pipedrive's webhook user:password, or for webhook an empty line to have one
    made (printed once on the last line). Shops, HubSpot and Pipedrive: prints
    the webhook URL to give the vendor.
    """
    from partnerloop.integrations import connectors
    from partnerloop.integrations.registry import ALL_KINDS, CRM_WEBHOOKS, OUTBOUND, kinds

    shop = ALL_KINDS.get(kind)
    if shop is None:
        err.print(f"[red]Unknown kind {kind!r}; known: {', '.join(kinds())}.[/red]")
        raise typer.Exit(2)
    if sys.stdin.isatty():
        err.print("Signing secret (then Enter; webhook: empty to have one made):")
    secret = sys.stdin.readline().strip() or None
    runtime = _runtime()
    try:
        with transaction(runtime.sessions) as session:
            connector = connectors.create(
                session,
                runtime.cipher,
                shop=shop,
                program_id=program,
                settings=_pairs(setting or [], "--setting"),
                secret=secret,
                credentials=_pairs(credential or [], "--credential"),
                now=utcnow(),
            )
            made = connectors.secrets_of(runtime.cipher, connector)[0]
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    if kind in OUTBOUND and kind not in CRM_WEBHOOKS:
        if kind in SIGNING_KINDS:
            err.print(f"created {connector.id} ({kind}) for program {program}; signing secret:")
            sys.stdout.write(made + "\n")
        else:
            err.print(f"created {connector.id} ({kind}) for program {program}")
            sys.stdout.write(connector.id + "\n")
        return
    err.print(f"created {connector.id} ({kind}) for program {program}; webhook URL:")
    sys.stdout.write(connectors.webhook_url(runtime.settings.public_url, connector.id) + "\n")


@connectors_app.command("list")
def connectors_list(
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
) -> None:
    """List connectors with their webhook URLs."""
    from partnerloop.integrations import connectors

    runtime = _runtime()
    table = Table("id", "program", "kind", "settings", "webhook URL")
    with runtime.sessions() as session:
        for row in connectors.list_connectors(session, program_id=program):
            table.add_row(
                row.id,
                row.program_id,
                row.kind,
                ", ".join(f"{k}={v}" for k, v in sorted(row.settings.items())),
                connectors.webhook_url(runtime.settings.public_url, row.id),
            )
    out.print(table)


@connectors_app.command("backfill")
def connectors_backfill(
    connector: Annotated[str, typer.Argument(help="The connector id (con_...).")],
    since: Annotated[
        str, typer.Option(help="Pull orders created or changed on/after this date (YYYY-MM-DD).")
    ],
    restart: Annotated[
        bool, typer.Option(help="Start over instead of resuming an interrupted backfill.")
    ] = False,
) -> None:
    """Pull historic orders through the shop's REST API into the inbox.

    Idempotent with the webhooks: an order seen both ways counts once. Each page
    is committed with its position, so an interrupted run resumes where it
    stopped when started again with the same --since. The worker (`partnerloop
    serve` or `partnerloop worker`) then applies the orders.
    """
    import httpx
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from partnerloop.integrations import backfill
    from partnerloop.integrations.registry import SHOPS
    from partnerloop.web.api.common import parse_moment

    runtime = _runtime()
    try:
        start = parse_moment(since, field="--since")
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(2) from None
    assert start is not None
    with Progress(
        TextColumn("[bold]backfill[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task(connector, total=None)

        def advance(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        try:
            with httpx.Client(timeout=60.0) as client:
                result = backfill.run(
                    runtime.sessions,
                    runtime.cipher,
                    SHOPS,
                    connector_id=connector,
                    since=start,
                    client=client,
                    restart=restart,
                    progress=advance,
                )
        except DomainError as error:
            err.print(f"[red]{error.detail}[/red]")
            raise typer.Exit(1) from None
        except httpx.HTTPError as error:
            err.print(
                f"[red]The shop's API failed: {error}. What was pulled is kept; run the "
                "same command again to resume.[/red]"
            )
            raise typer.Exit(1) from None
    pages = f"{result.pages} page{'' if result.pages == 1 else 's'}"
    out.print(
        f"{'resumed, ' if result.resumed else ''}{pages}: {result.stored} new, "
        f"{result.duplicates} already received"
    )


@deliveries_app.command("list")
def deliveries_list(
    connector: Annotated[str | None, typer.Option(help="Only this connector.")] = None,
    state: Annotated[str | None, typer.Option(help="pending, retry, delivered or dead.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """List deliveries to outgoing connectors, oldest first, with their last error."""
    from partnerloop.integrations.registry import DELIVERY_KINDS
    from partnerloop.sync.models import OutboxMessage

    table = Table("id", "connector", "topic", "state", "attempts", "last error")
    rows = _jobs(
        OutboxMessage,
        program_id=None,
        state=state,
        limit=limit,
        destination_kinds=list(DELIVERY_KINDS),
        destination_id=connector,
    )
    for row in rows:
        table.add_row(
            row.id,
            f"{row.destination_kind} {row.destination_id}",
            row.topic,
            row.state,
            str(row.attempts),
            (row.last_error or "")[:120],
        )
    out.print(table)


def _replay(model: type[Any], job_id: str) -> None:
    from partnerloop.sync import service as sync

    runtime = _runtime()
    try:
        with transaction(runtime.sessions) as session:
            state = sync.replay(session, model, job_id, program_id=None, now=utcnow()).state
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    out.print(f"{job_id}: {state}")


def _jobs(model: type[Any], **filters: Any) -> list[Any]:
    from partnerloop.sync import service as sync

    runtime = _runtime()
    try:
        with runtime.sessions() as session:
            return list(sync.list_jobs(session, model, after=None, **filters))
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None


@deliveries_app.command("replay")
def deliveries_replay(delivery_id: str) -> None:
    """Queue a dead delivery again (e.g. after the endpoint or the mapping was fixed)."""
    from partnerloop.sync.models import OutboxMessage

    _replay(OutboxMessage, delivery_id)


@inbound_app.command("list")
def inbound_list(
    state: Annotated[
        str | None,
        typer.Option(help="pending, retry, processed, rejected (quarantined) or dead."),
    ] = None,
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """List received events with the reason a quarantined one was rejected."""
    from partnerloop.sync.models import InboundEvent

    table = Table("id", "source", "topic", "state", "attempts", "reason")
    for row in _jobs(InboundEvent, program_id=program, state=state, limit=limit):
        table.add_row(
            row.id,
            row.source,
            row.topic,
            row.state,
            str(row.attempts),
            (row.last_error or "")[:120],
        )
    out.print(table)


@inbound_app.command("replay")
def inbound_replay(event_id: str) -> None:
    """Process a rejected or dead event again (after a fix)."""
    from partnerloop.sync.models import InboundEvent

    _replay(InboundEvent, event_id)


@report_app.command("send")
def report_send(
    program: Annotated[str, typer.Option(help="The program's id.")],
    week: Annotated[
        str | None,
        typer.Option(help="ISO week YYYY-Www, e.g. 2026-W47 (default: the last complete week)."),
    ] = None,
) -> None:
    """Queue the weekly report e-mail of a program; the worker sends it to the program's
    owners, managers and finance staff and PARTNERLOOP_NOTIFY_EMAIL. Once per program and
    week: a report already queued (by this command or on Monday) is not sent again."""
    from partnerloop.analytics.report import parse_week
    from partnerloop.integrations import weekly_report

    runtime = _runtime()
    now = utcnow()
    try:
        chosen = parse_week(week, today=now.date())
        with transaction(runtime.sessions) as session:
            queued = weekly_report.enqueue(
                session, runtime.cipher, program_id=program, week=chosen, now=now
            )
    except DomainError as error:
        err.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    if queued:
        out.print(f"queued the weekly report of {program} for {chosen.label}")
    else:
        out.print(
            f"the weekly report of {program} for {chosen.label} was queued before: not sent again"
        )


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":")[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def main() -> None:
    app()
