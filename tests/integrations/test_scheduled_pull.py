"""Scheduled pulls for shops without events (Magento Open Source): due
connectors are pulled from where the last good pull started, once per
interval, by one worker, and a failed pull is covered again next time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.integrations import scheduled
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import SHOPS
from tests.conftest import Server, drain
from tests.factories.connectors import create_connector_api, orders_for
from tests.factories.magento import fixture_order
from tests.factories.programs import create_program_api
from tests.support.http import Reply, ScriptedServer


def _page(orders: list[dict[str, Any]]) -> Reply:
    body = {"items": orders, "search_criteria": {"current_page": 1}, "total_count": len(orders)}
    return Reply(200, {"content-type": "application/json"}, json.dumps(body).encode())


def _order(entity_id: int, updated_at: str, state: str = "processing") -> dict[str, Any]:
    return dict(
        fixture_order(),
        entity_id=entity_id,
        increment_id=f"0000{entity_id}",
        updated_at=updated_at,
        state=state,
        status=state,
    )


def _since(path: str) -> str:
    query = parse_qs(urlsplit(path).query)
    return query["searchCriteria[filter_groups][0][filters][0][value]"][0]


def _pull(server: Server, now: Any) -> int:
    return scheduled.pull_due(
        server.runtime.sessions,
        server.runtime.cipher,
        SHOPS,
        client_factory=lambda: httpx.Client(timeout=10),
        now=now,
    )


def test_a_store_without_events_is_pulled_on_schedule(server: Server) -> None:
    shop = ScriptedServer([])
    with shop.running(), server.client() as api:
        currency = fixture_order()["order_currency_code"]
        program = create_program_api(api, currency=currency)
        connector = create_connector_api(
            api,
            program["id"],
            "magento",
            secret="adobe-client-secret",
            settings={"base_url": shop.url, "pull_every_minutes": "15"},
            credentials={"access_token": "magento-token"},
        )
        created = datetime.fromisoformat(connector["created_at"].replace("Z", "+00:00"))
        t0 = created + timedelta(seconds=1)
        assert connector["settings"]["pull_every_minutes"] == 15

        shop.replies = [
            _page([_order(501, "2026-11-24 09:00:00"), _order(502, "2026-11-24 09:05:00")])
        ]
        first = _pull(server, t0)
        early = _pull(server, t0 + timedelta(minutes=5))  # not due: nothing asked
        shop.replies = [Reply(404, {}, b"maintenance")]
        failed = _pull(server, t0 + timedelta(minutes=16))
        shop.replies = [
            _page(
                [
                    _order(502, "2026-11-24 09:05:00"),
                    _order(503, "2026-11-24 09:20:00", state="new"),
                ]
            )
        ]
        retried = _pull(server, t0 + timedelta(minutes=32))
        drain(server.runtime)

        assert (first, early, failed, retried) == (2, 0, 0, 1)
        sinces = [_since(r.path) for r in shop.received]
        # First pull: from a day before the connector existed; the failed pull's
        # range is asked again after it; each from the last good start less 10 min.
        first_since = (created - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
        after_first = (t0 - timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S")
        assert sinces == [first_since, after_first, after_first]
        assert all(r.headers["authorization"] == "Bearer magento-token" for r in shop.received)
        orders = orders_for(api, program["id"])
        assert sorted((o["external_id"], o["status"]) for o in orders) == [
            ("501", "paid"),
            ("502", "paid"),
            ("503", "pending"),
        ]


def test_only_one_worker_wins_a_due_pull(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, currency="USD")
        connector = create_connector_api(
            api,
            program["id"],
            "magento",
            secret="s",
            settings={"base_url": "http://127.0.0.1:9", "pull_every_minutes": 5},
        )
    now = utcnow() + timedelta(seconds=1)
    with server.runtime.sessions() as db:
        stale = db.scalars(select(Connector).where(Connector.id == connector["id"])).one()
        db.expunge(stale)

    with transaction(server.runtime.sessions) as db:
        first = scheduled.claim(db, db.get_one(Connector, connector["id"]), now)
    with transaction(server.runtime.sessions) as db:
        second = scheduled.claim(db, stale, now)  # another worker that read it before

    assert first is not None
    assert second is None


def test_pull_interval_is_validated(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, currency="USD")
        answers = [
            api.post(
                "/api/v1/connectors",
                json={
                    "program_id": program["id"],
                    "kind": "magento",
                    "secret": "s",
                    "settings": {"base_url": "https://m.example.com", "pull_every_minutes": value},
                },
            )
            for value in (1, "often", 1441, True)
        ]
    assert [a.status_code for a in answers] == [422] * 4
    assert {a.json()["field"] for a in answers} == {"settings.pull_every_minutes"}
