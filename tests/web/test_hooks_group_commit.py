"""Webhooks share commits (the store, core/groupcommit.py) but keep their own
answers: many deliveries at once over real HTTP, good, duplicated and badly
signed mixed together; and the batch commit itself, driven directly."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from partnerloop.core.clock import utcnow
from partnerloop.core.db import make_engine, make_sessionmaker, transaction
from partnerloop.core.errors import Unauthorized
from partnerloop.core.groupcommit import commit_together
from partnerloop.integrations import connectors
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.sync.models import InboundEvent
from partnerloop.web.app import create_app
from tests.conftest import Backend, Server
from tests.factories.connectors import hook_path
from tests.factories.shopify import deliver, paid_order, setup, sign
from tests.support import aio
from tests.sync.test_worker import _clean

__all__ = ["_clean"]  # autouse: the test-kind events stored here must not reach other tests


def _events(runtime: Runtime, connector_id: str) -> Counter[str]:
    with runtime.sessions() as db:
        return Counter(
            db.scalars(
                select(InboundEvent.external_id).where(
                    InboundEvent.source == connectors.source_of(connector_id)
                )
            )
        )


def test_concurrent_webhooks_each_get_their_own_answer_and_are_stored_once(
    server: Server,
) -> None:
    with server.client() as api:
        _, connector = setup(api)
        bodies = {n: json.dumps(paid_order(8_000_000 + n)).encode() for n in range(40)}

    def send(n: int) -> tuple[int, int, str]:
        # Every fifth is signed with another key, every fourth is sent twice.
        with server.client() as client:
            secret = "not-the-secret" if n % 5 == 0 else "shpss_test_secret"
            first = deliver(
                client, connector, "orders/create", bodies[n], event_id=f"g-{n}", secret=secret
            )
            if n % 4 != 1:
                answer = first.json()
                return (
                    n,
                    first.status_code,
                    answer["code" if first.status_code == 401 else "status"],
                )
            again = deliver(client, connector, "orders/create", bodies[n], event_id=f"g-{n}")
            return n, again.status_code, again.json()["status"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = sorted(pool.map(send, range(40)))

    # A refused delivery stored nothing, so its redelivery with the right key is new.
    def want(n: int) -> tuple[int, int, str]:
        if n % 4 == 1:
            return n, 200, "accepted" if n % 5 == 0 else "duplicate"
        return (n, 401, "invalid_signature") if n % 5 == 0 else (n, 200, "accepted")

    assert answers == [want(n) for n in range(40)]
    stored = _events(server.runtime, connector["id"])
    assert stored == Counter({f"g-{n}": 1 for n in range(40) if n % 5 != 0 or n % 4 == 1})


def test_an_unknown_connector_is_404_and_stores_nothing(server: Server) -> None:
    with server.client() as api:
        response = api.post(
            "/hooks/con_00000000000000000000000000",
            content=b"{}",
            headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": "x"},
        )
        assert (response.status_code, response.json()["code"]) == (404, "connector_not_found")
        with server.runtime.sessions() as db:
            count = db.scalar(
                select(func.count())
                .select_from(InboundEvent)
                .where(
                    InboundEvent.source == connectors.source_of("con_00000000000000000000000000")
                )
            )
        assert count == 0


def test_a_duplicate_inside_one_batch_is_stored_once(runtime: Runtime, server: Server) -> None:
    with server.client() as api:
        _, connector = setup(api)
    event = sync.NewEvent(
        kind=connectors.INBOUND_KIND,
        source=connectors.source_of(connector["id"]),
        external_id="same-in-batch",
        topic="orders/create",
        payload=b"{}",
        program_id=None,
    )
    other = sync.NewEvent(**{**event.__dict__, "external_id": "other-in-batch"})
    with transaction(runtime.sessions) as db:
        stored = sync.store_events(db, runtime.cipher, [event, other, event], now=utcnow())

    assert [created for _, created in stored] == [True, True, False]
    assert stored[0][0] == stored[2][0] != stored[1][0]
    assert _events(runtime, connector["id"]) == Counter({"same-in-batch": 1, "other-in-batch": 1})


# --- the committer alone ----------------------------------------------------------------------


def _table_writer(runtime: Runtime, refuse: set[int], poison: set[int]) -> Any:
    """Writes each number as an inbox row; refuses some (an outcome of their own) and
    fails the whole transaction on others (a write that breaks the batch)."""

    def write(session: Session, items: Sequence[int]) -> list[str | BaseException]:
        if any(n in poison for n in items):
            raise RuntimeError("poison")
        out: list[str | BaseException] = []
        for n in items:
            if n in refuse:
                out.append(Unauthorized("no", code="invalid_signature"))
                continue
            event_id, _ = sync.store_event(
                session,
                runtime.cipher,
                kind="test-group",
                source="test-group",
                external_id=f"item-{n}-{id(items)}",
                topic="t",
                payload=b"{}",
                program_id=None,
                now=utcnow(),
            )
            out.append(event_id)
        return out

    return write


@pytest.mark.parametrize("size", [1, 10])
def test_one_poisonous_write_fails_only_its_caller(runtime: Runtime, size: int) -> None:
    write = _table_writer(runtime, refuse={3}, poison={5})
    results: list[str | BaseException] = []
    for start in range(0, 10, size):
        results.extend(commit_together(runtime.sessions, write, range(start, start + size)))

    kinds = [type(r).__name__ if isinstance(r, BaseException) else "stored" for r in results]
    assert kinds == ["stored"] * 3 + ["Unauthorized", "stored", "RuntimeError"] + ["stored"] * 4
    with runtime.sessions() as db:
        stored = set(db.scalars(select(InboundEvent.id).where(InboundEvent.source == "test-group")))
    assert {r for r in results if isinstance(r, str)} <= stored
    assert len({r for r in results if isinstance(r, str)}) == 8


def test_a_batch_on_a_connection_the_database_dropped_is_tried_again_whole(
    backend: Backend, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    # Given the store's kind of engine (no ping before a checkout), its one
    # connection pooled after a batch, then ended by the server
    engine = make_engine(backend.database_url, pool_size=1, pre_ping=False)
    sessions = make_sessionmaker(engine)
    write = _table_writer(runtime, refuse=set(), poison=set())
    try:
        assert isinstance(commit_together(sessions, write, [1])[0], str)
        with engine.connect() as pooled:
            pid = pooled.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with runtime.engine.connect() as admin:
            assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        # When the next batch, of one, meets the dropped connection
        caplog.set_level(logging.WARNING, logger="partnerloop.groupcommit")
        (outcome,) = commit_together(sessions, write, [2])
    finally:
        engine.dispose()
    # Then it is stored on a new connection, not failed
    assert isinstance(outcome, str), outcome
    assert "connection was lost" in caplog.text
    with runtime.sessions() as db:
        assert db.get(InboundEvent, outcome) is not None


def test_a_write_that_miscounts_its_outcomes_is_tried_item_by_item(runtime: Runtime) -> None:
    calls: list[int] = []

    def write(session: Session, items: Sequence[int]) -> list[int]:
        calls.append(len(items))
        return list(items)[:1]  # one outcome, whatever the batch's size

    assert commit_together(runtime.sessions, write, [7, 8, 9]) == [7, 8, 9]
    assert calls == [3, 1, 1, 1]


def test_webhook_post_over_http_still_refuses_a_tampered_body(server: Server) -> None:
    with server.client() as api:
        _, connector = setup(api)
        body = json.dumps(paid_order(8_100_001)).encode()
        tampered = api.post(
            hook_path(connector),
            content=body + b" ",
            headers={
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Hmac-Sha256": sign(body),
                "X-Shopify-Event-Id": "tampered-1",
            },
        )
    assert (tampered.status_code, tampered.json()["code"]) == (401, "invalid_signature")
    assert _events(server.runtime, connector["id"]) == Counter()


def test_an_app_called_from_a_new_event_loop_per_request_answers_every_webhook(
    server: Server,
) -> None:
    # Given an app driven by Starlette's TestClient outside `with`: every request
    # runs on an event loop of its own, closed after it
    with server.client() as api:
        _, connector = setup(api)
    app = create_app(server.runtime, run_worker=False)
    client = TestClient(app, base_url=server.runtime.settings.public_url)

    # When webhooks are posted one after the other
    answers = [
        deliver(
            client,
            connector,
            "orders/create",
            json.dumps(paid_order(8_100_000 + n)).encode(),
            event_id=f"loop-{n}",
        )
        for n in range(3)
    ]

    # Then each is answered and stored (the second used to wait forever on the
    # first loop's connection to the store)
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "accepted")] * 3
    assert _events(server.runtime, connector["id"]) == Counter({f"loop-{n}": 1 for n in range(3)})
    aio.run(app.api.state.hook_writer.close)  # its store thread ends too
