"""`partnerloop serve`'s store process (web/store.py): killed, it is
started again and no answered click or webhook is lost or doubled meanwhile; it
goes when serve goes, however serve goes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.integrations import connectors
from partnerloop.runtime import Runtime
from partnerloop.sync.models import InboundEvent
from partnerloop.tracking.models import Click, Link
from tests.conftest import Backend, free_port
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.shopify import deliver, paid_order, setup
from tests.factories.tracking import BROWSER_UA, create_link_api
from tests.processes.conftest import (
    Proc,
    Processes,
    alive,
    backend_env,
    click_stores,
    last_line,
    run_cli,
    unique,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.slow


def _serve(backend: Backend, processes: Processes, *extra: str) -> tuple[Proc, str, str]:
    """serve started, its base URL and an admin API key."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = backend_env(backend, PARTNERLOOP_WORKER_IN_PROCESS="false", PARTNERLOOP_PUBLIC_URL=base)
    serve = processes.start("serve", "--host", "127.0.0.1", "--port", str(port), *extra, env=env)
    created = run_cli("api-key", "create", "--scope", "admin", "--name", unique("cs"), env=env)
    assert created.returncode == 0, created.stderr
    wait_ready(base, serve)
    return serve, base, last_line(created.stdout)


def _start(backend: Backend, processes: Processes, *extra: str) -> tuple[Proc, str, str]:
    serve, base, key = _serve(backend, processes, *extra)
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
    ) as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
    return serve, base, link["code"]


def _click(client: httpx.Client, code: str) -> str | None:
    """The click id the redirect handed out, or None when it was not recorded."""
    response = client.get(f"/r/{code}", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 302, response.text
    ids = parse_qs(urlsplit(response.headers["location"]).query).get("plclid")
    return ids[0] if ids else None


def _stored(observer: sessionmaker[Session], code: str) -> set[str]:
    with observer() as session:
        link_id = session.scalar(select(Link.id).where(Link.code == code))
        return set(session.scalars(select(Click.id).where(Click.link_id == link_id)))


def test_a_killed_click_store_is_restarted_and_no_answered_click_is_lost(
    backend: Backend,
    quiet_queue: Runtime,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    serve, base, code = _start(backend, processes)
    stores = click_stores(serve.pid)
    assert len(stores) == 1, serve.describe()

    handed_out: list[str] = []
    unrecorded = 0
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for _ in range(20):
            click_id = _click(client, code)
            assert click_id is not None
            handed_out.append(click_id)

        os.kill(stores[0], signal.SIGKILL)
        # Shoppers keep being redirected while it is down; once it is back the
        # clicks are recorded again.
        deadline = time.monotonic() + 30
        recorded_again = 0
        while recorded_again < 20:
            assert time.monotonic() < deadline, serve.describe()
            click_id = _click(client, code)
            if click_id is None:
                unrecorded += 1
            else:
                handed_out.append(click_id)
                recorded_again += 1

    restarted = click_stores(serve.pid)
    assert len(restarted) == 1, serve.describe()
    assert restarted != stores
    assert "the store stopped" in serve.output()
    # Every click id a shopper was given is stored, once; nothing else is.
    assert len(set(handed_out)) == len(handed_out)
    assert _stored(observer, code) == set(handed_out)


def test_webhooks_sent_while_the_store_is_down_are_503_and_stored_once_when_sent_again(
    backend: Backend,
    quiet_queue: Runtime,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    serve, base, key = _serve(backend, processes)
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
    ) as api:
        _, connector = setup(api)
    stores = click_stores(serve.pid)

    def send(client: httpx.Client, n: int) -> int:
        body = json.dumps(paid_order(9_300_000 + n)).encode()
        response = deliver(client, connector, "orders/create", body, event_id=f"down-{n}")
        if response.status_code == 503:
            assert response.json()["code"] == "store_unavailable"
        else:
            assert response.json()["status"] == "accepted", response.text
        return response.status_code

    answers: dict[int, list[int]] = {}
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for n in range(10):
            answers[n] = [send(client, n)]
        os.kill(stores[0], signal.SIGKILL)
        # A shop retries what was not answered 200 (Shopify: up to 8 times in 4 hours).
        deadline = time.monotonic() + 30
        n = 10
        while sum(1 for sent in answers.values() if sent[-1] == 200) < 30:
            assert time.monotonic() < deadline, serve.describe()
            pending = [m for m, sent in answers.items() if sent[-1] != 200]
            m = pending[0] if pending else n
            if not pending:
                n += 1
            answers.setdefault(m, []).append(send(client, m))

    assert [sent for sent in answers.values() if 503 in sent], "none came while it was down"
    assert all(sent[-1] == 200 and sent.count(200) == 1 for sent in answers.values())
    with observer() as session:
        stored = list(
            session.scalars(
                select(InboundEvent.external_id).where(
                    InboundEvent.source == connectors.source_of(connector["id"])
                )
            )
        )
    # Every webhook answered 200 is in the inbox, once; a 503 stored nothing extra.
    assert sorted(stored) == sorted(f"down-{m}" for m in answers)


def test_serve_workers_share_one_store(
    backend: Backend,
    quiet_queue: Runtime,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    serve, base, code = _start(backend, processes, "--workers", "2")
    wait_until(
        lambda: serve.output().count("Application startup complete") >= 2,
        what="two server processes",
    )
    assert len(click_stores(serve.pid)) == 1, serve.describe()
    handed_out = set()
    for _ in range(30):  # a new connection each: the kernel spreads them over both
        with httpx.Client(base_url=base, timeout=10.0) as client:
            click_id = _click(client, code)
            assert click_id is not None
            handed_out.add(click_id)
    assert _stored(observer, code) == handed_out


def test_the_click_store_stops_with_serve(
    backend: Backend, quiet_queue: Runtime, processes: Processes
) -> None:
    # Stopped in order: its last clicks committed, then the store.
    serve, _, _ = _start(backend, processes)
    (store,) = click_stores(serve.pid)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0, serve.describe()
    wait_until(lambda: not alive(store), what="the click store to stop with serve")

    # Killed outright: the store notices its parent is gone and ends by itself,
    # and takes its socket's directory with it.
    serve, _, _ = _start(backend, processes)
    (store,) = click_stores(serve.pid)
    arguments = Path(f"/proc/{store}/cmdline").read_bytes().split(b"\0")
    socket_path = Path(arguments[arguments.index(b"--socket") + 1].decode())
    assert socket_path.exists()
    serve.popen.send_signal(signal.SIGKILL)
    serve.popen.wait(timeout=10)
    wait_until(lambda: not alive(store), what="an orphaned click store to end")
    wait_until(lambda: not socket_path.parent.exists(), what="its socket directory to go")
