"""Test infrastructure: every test that takes `runtime` runs on SQLite AND PostgreSQL.

The schema is built by running the Alembic migrations. PostgreSQL tests use a
schema of their own per test run (dropped at the end). Without a PostgreSQL
server they skip, unless REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from partnerloop.access import service as access
from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.migrate import upgrade
from partnerloop.core.settings import Settings
from partnerloop.runtime import Runtime, build_runtime
from partnerloop.web.app import PartnerloopApp, create_app
from partnerloop.web.front import ClickFront

PG_ADMIN_URL = os.environ.get(
    "PARTNERLOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"


@dataclass
class Backend:
    name: str
    database_url: str
    settings: Settings


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    key = secrets.token_hex(32)
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'partnerloop.db'}"
        schema = None
    else:
        problem = _pg_available()
        if problem is not None:
            if REQUIRE_POSTGRES:
                pytest.fail(
                    f"PostgreSQL is required (REQUIRE_POSTGRES=1) but not reachable: {problem}"
                )
            pytest.skip(f"PostgreSQL not reachable: {problem}")
        schema = f"pl_test_{os.getpid()}_{secrets.token_hex(3)}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    settings = Settings.from_env(
        {
            "PARTNERLOOP_DATA_DIR": str(data_dir),
            "PARTNERLOOP_DATABASE_URL": url,
            "PARTNERLOOP_SECRET_KEY": key,
            "PARTNERLOOP_WORKER_POLL_SECONDS": "0.05",
        }
    )
    try:
        yield Backend(name=request.param, database_url=url, settings=settings)
    finally:
        if schema is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture(scope="session")
def runtime(backend: Backend) -> Iterator[Runtime]:
    built = build_runtime(backend.settings)
    upgrade(built.engine)
    yield built
    built.close()


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    """A session whose work is rolled back after the test (commits become savepoints)."""
    connection = runtime.engine.connect()
    outer = connection.begin()
    db = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield db
    finally:
        db.close()
        outer.rollback()
        connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    runtime: Runtime
    admin_key: str
    app: PartnerloopApp

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=30.0, follow_redirects=False
        )


@contextmanager
def serving(app: PartnerloopApp) -> Iterator[tuple[str, uvicorn.Server]]:
    """A real uvicorn on 127.0.0.1 serving `app` as `partnerloop serve` runs it
    (its HTTP front, web/front.py), in a thread: its base URL and the server."""
    port = free_port()
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=ClickFront,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", uv
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(runtime: Runtime) -> Iterator[Server]:
    """A real uvicorn on 127.0.0.1 serving the app; committed data, real HTTP.

    Its in-process worker is off: tests run jobs with `drain(runtime)` so they
    decide when work happens.
    """
    app = create_app(runtime, run_worker=False)
    with serving(app) as (url, _):
        with transaction(runtime.sessions) as db:
            key = access.create(
                db, name="tests", scope=Scope.admin, program_id=None, now=utcnow()
            ).secret
        yield Server(url=url, runtime=runtime, admin_key=key, app=app)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def drain(runtime: Runtime) -> int:
    """Run every due job now (the worker a test controls)."""
    return runtime.make_worker().drain()


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
