"""HubSpot: customers upserted as contacts by e-mail, against a local server
answering with HubSpot's published bodies (../shared/fixtures/hubspot), with
its rate limits, quotas and errors handled as the docs say."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest

from partnerloop.integrations.models import Connector
from partnerloop.sync.models import OutboxMessage
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.connectors import fixture_bytes
from tests.factories.orders import customer_sale as sale
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.clock import Clock, worker
from tests.support.http import Received, Reply, ScriptedServer

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
TOKEN = "pat-eu1-test-token"


def accepted() -> Reply:
    # HubSpot's own example of a batch answer (200).
    return Reply(
        200,
        {"content-type": "application/json"},
        fixture_bytes("hubspot", "docs_contacts-batch-update_response-example.json"),
    )


def connect(api: httpx.Client, program_id: str, url: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        "/api/v1/connectors",
        json={
            "program_id": program_id,
            "kind": "hubspot",
            "settings": {"api_base_url": url},
            "credentials": {"access_token": TOKEN},
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def upserts(received: list[Received]) -> list[dict[str, Any]]:
    """Every contact sent, after checking each request has HubSpot's documented shape."""
    contacts = []
    for request in received:
        assert (request.method, request.path) == ("POST", UPSERT)
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["content-type"] == "application/json"
        body = request.json()
        assert set(body) == {"inputs"}
        for item in body["inputs"]:
            assert set(item) == {"id", "idProperty", "objectWriteTraceId", "properties"}
            assert item["idProperty"] == "email"
            assert item["id"] == item["properties"]["email"]
            assert item["objectWriteTraceId"] == item["id"].lower()
            # HubSpot property values are text.
            assert all(isinstance(v, str) for v in item["properties"].values())
            contacts.append(item["properties"])
    return contacts


def test_a_referred_customer_becomes_a_hubspot_contact(server: Server) -> None:
    hubspot = ScriptedServer([], then=accepted())
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        affiliate = create_affiliate_api(api, program["id"], name="Anna de Vries")
        link = create_link_api(api, program["id"], affiliate["id"])
        sale(
            api,
            program["id"],
            "hs-1",
            "100.00",
            "Jan@Example.com",
            click_id=click(api, link["code"]),
        )
        worker(server.runtime, Clock()).drain()
        first = upserts(hubspot.received)
        sale(api, program["id"], "hs-2", "50.00", "jan@example.com")
        worker(server.runtime, Clock()).drain()
        deliveries = api.get("/api/v1/deliveries", params={"connector_id": connector["id"]}).json()

    [contact] = first
    assert contact["email"] == "jan@example.com"
    assert contact["partnerloop_affiliate_id"] == affiliate["id"]
    assert contact["partnerloop_affiliate"] == "Anna de Vries"
    assert (contact["partnerloop_order_count"], contact["partnerloop_lifetime_value"]) == (
        "1",
        "100.00",
    )
    # The second order: the same contact, now with both orders (lifetime attribution).
    latest = upserts(hubspot.received)[-1]
    assert latest["email"] == "jan@example.com"
    assert (latest["partnerloop_order_count"], latest["partnerloop_lifetime_value"]) == (
        "2",
        "150.00",
    )
    assert latest["partnerloop_affiliate_id"] == affiliate["id"]
    assert {d["state"] for d in deliveries["items"]} == {"delivered"}
    assert (connector["direction"], connector["secret"]) == ("out", "")


def test_the_daily_quota_pauses_the_connector_until_midnight(server: Server) -> None:
    daily = Reply(
        429,
        {"content-type": "application/json"},
        fixture_bytes("hubspot", "429_daily_docs-example.json"),
    )
    hubspot = ScriptedServer([daily], then=accepted())
    clock = Clock()
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        sale(api, program["id"], "q-1", "10.00", "q1@example.com")
        sale(api, program["id"], "q-2", "10.00", "q2@example.com")
        running = worker(server.runtime, clock)

        running.drain()
        asked_on_the_day = len(hubspot.received)
        with server.runtime.sessions() as db:
            paused_until = db.get_one(Connector, connector["id"]).paused_until
        midnight = (
            (clock.now + timedelta(days=1))
            .astimezone(UTC)
            .replace(hour=0, minute=0, second=0, microsecond=0)
        )
        clock.now = midnight - timedelta(seconds=1)
        running.drain()
        asked_before_midnight = len(hubspot.received)
        clock.now = midnight + timedelta(seconds=5)
        running.drain()

    # One call hit the limit; the other message waited without calling HubSpot.
    assert asked_on_the_day == 1
    assert paused_until == midnight
    assert asked_before_midnight == 1
    assert sorted(c["email"] for c in upserts(hubspot.received[1:])) == [
        "q1@example.com",
        "q2@example.com",
    ]


def test_a_secondly_limit_waits_for_retry_after(server: Server) -> None:
    # The SECONDLY body has the shape NOTES.md documents for HubSpot's 429s.
    secondly = Reply(
        429,
        {"content-type": "application/json", "Retry-After": "10"},
        json.dumps(
            {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": "00000000-0000-0000-0000-000000000000",
                "policyName": "SECONDLY",
            }
        ).encode(),
    )
    hubspot = ScriptedServer([secondly], then=accepted())
    clock = Clock()
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connect(api, program["id"], hubspot.url)
        sale(api, program["id"], "s-1", "10.00", "s1@example.com")
        running = worker(server.runtime, clock)
        running.drain()
        clock.advance(9)
        running.drain()
        before = len(hubspot.received)
        clock.advance(2)
        running.drain()

    assert (before, len(hubspot.received)) == (1, 2)


def test_a_storm_of_secondly_429s_does_not_open_the_circuit_breaker(server: Server) -> None:
    """Five and more 429s in a row are rate limiting, each with its own short wait:
    the contact goes out as soon as HubSpot takes calls again, not after the
    breaker's cooldown."""
    secondly = Reply(
        429,
        {"content-type": "application/json", "Retry-After": "1"},
        json.dumps(
            {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "policyName": "SECONDLY",
            }
        ).encode(),
    )
    hubspot = ScriptedServer([secondly] * 7, then=accepted())
    clock = Clock()
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        sale(api, program["id"], "storm-1", "10.00", "storm@example.com")
        running = worker(server.runtime, clock)
        for _ in range(8):  # seven 429s, then the accepted call
            running.drain()
            clock.advance(1.5)
        with server.runtime.sessions() as db:
            row = db.get_one(Connector, connector["id"])
            failures, paused_until = row.consecutive_failures, row.paused_until

    assert len(hubspot.received) == 8
    assert (failures, paused_until) == (0, None)


def test_a_hubspot_that_is_down_gets_every_update_once_it_is_back(server: Server) -> None:
    hubspot = ScriptedServer([Reply(503), Reply(502), Reply(503)], then=accepted())
    clock = Clock()
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        sale(api, program["id"], "d-1", "10.00", "down@example.com")
        refund = api.post(
            "/api/v1/refunds",
            json={
                "program_id": program["id"],
                "order_id": "d-1",
                "amount": "4.00",
                "currency": "EUR",
                "refund_id": "r-1",
            },
        )
        assert refund.status_code in (200, 201), refund.text
        running = worker(server.runtime, clock)
        for _ in range(8):
            running.drain()
            clock.advance(3600)

    with server.runtime.sessions() as db:
        messages = db.query(OutboxMessage).filter_by(destination_id=connector["id"]).all()
    # One message per change (the order, its refund), each delivered once.
    assert sorted(m.state for m in messages) == ["delivered", "delivered"]
    # Both changes were due together once HubSpot was back: one contact in one call,
    # with the latest state (the refund applied).
    accepted_contacts = upserts(hubspot.received[3:])
    assert len(accepted_contacts) == 1
    assert accepted_contacts[-1]["partnerloop_lifetime_value"] == "6.00"


def test_a_refused_property_is_dead_lettered_with_hubspots_message_and_replayable(
    server: Server,
) -> None:
    refused = Reply(
        400,
        {"content-type": "application/json"},
        json.dumps(
            {
                "status": "error",
                "message": 'Property values were not valid: [{"isValid":false,"message":"Property '
                '\\"partnerloop_coupon\\" does not exist","error":"PROPERTY_DOESNT_EXIST"}]',
                "correlationId": "11111111-1111-1111-1111-111111111111",
                "category": "VALIDATION_ERROR",
            }
        ).encode(),
    )
    hubspot = ScriptedServer([refused], then=accepted())
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        sale(api, program["id"], "v-1", "10.00", "v@example.com")
        worker(server.runtime, Clock()).drain()
        [dead] = api.get(
            "/api/v1/deliveries", params={"connector_id": connector["id"], "state": "dead"}
        ).json()["items"]
        replayed = api.post(f"/api/v1/deliveries/{dead['id']}/replay")
        worker(server.runtime, Clock()).drain()
        after = api.get(f"/api/v1/deliveries/{dead['id']}").json()

    assert dead["attempts"] == 1  # not retried: a retry cannot fix a missing property
    assert "PROPERTY_DOESNT_EXIST" in dead["last_error"]
    assert replayed.status_code == 200
    assert after["state"] == "delivered"


def test_the_field_mapping_is_validated_versioned_and_used(server: Server) -> None:
    hubspot = ScriptedServer([], then=accepted())
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        path = f"/api/v1/connectors/{connector['id']}/mapping"
        default = api.get(path).json()
        bad = api.put(
            path,
            json={"mapping": {"version": 2, "fields": [{"target": "x", "source": "nope"}]}},
        )
        mine = {
            "version": 2,
            "fields": [
                {"target": "email", "source": "email", "transforms": [{"type": "lowercase"}]},
                {
                    "target": "lead_source",
                    "source": "affiliate_name",
                    "transforms": [{"type": "default", "value": "Direct"}],
                },
                {
                    "target": "ltv",
                    "source": "lifetime_value",
                    "transforms": [{"type": "money", "format": "decimal_with_currency"}],
                },
            ],
        }
        keyless = api.put(
            path,
            json={"mapping": {"version": 2, "fields": [{"target": "city", "source": "coupon"}]}},
        )
        saved = api.put(path, json={"mapping": mine})
        stale = api.put(path, json={"mapping": mine})
        sale(api, program["id"], "m-1", "12.34", "M@Example.com")
        worker(server.runtime, Clock()).drain()
        webhook_mapping = api.get(
            f"/api/v1/connectors/{create_webhook(api, program['id'])}/mapping"
        )

    assert default["is_default"] is True
    assert any(f["target"] == "partnerloop_affiliate_id" for f in default["mapping"]["fields"])
    assert "lifetime_value" in default["source_fields"]
    assert (bad.status_code, bad.json()["field"]) == (422, "mapping.fields[0].source")
    assert (keyless.status_code, keyless.json()["code"], keyless.json()["field"]) == (
        422,
        "missing_key_field",
        "mapping.fields",
    )
    assert (saved.status_code, saved.json()["is_default"]) == (200, False)
    assert (stale.status_code, stale.json()["code"]) == (409, "stale_mapping_version")
    assert upserts(hubspot.received) == [
        {"email": "m@example.com", "lead_source": "Direct", "ltv": "12.34 EUR"}
    ]
    assert webhook_mapping.status_code == 409


def create_webhook(api: httpx.Client, program_id: str) -> str:
    response = api.post(
        "/api/v1/connectors",
        json={
            "program_id": program_id,
            "kind": "webhook",
            "settings": {"url": "https://x.example.com"},
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_an_unknown_time_zone_is_refused(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "hubspot",
                "settings": {"timezone": "Mars/Olympus"},
            },
        )
    assert (response.status_code, response.json()["field"]) == (422, "settings.timezone")


def _read_answer(email: str, updated_at: str, **properties: str) -> Reply:
    # The batch read answer has the shape of HubSpot's batch responses (fixture above).
    body = {
        "status": "COMPLETE",
        "results": [
            {
                "id": "512",
                "properties": {"email": email, **properties},
                "createdAt": "2019-10-30T03:30:17.883Z",
                "updatedAt": updated_at,
                "archived": False,
            }
        ],
        "startedAt": "2026-11-24T05:31:56Z",
        "completedAt": "2026-11-24T05:31:56Z",
    }
    return Reply(200, {"content-type": "application/json"}, json.dumps(body).encode())


def test_conflict_policies_decide_each_field_and_every_decision_is_logged(server: Server) -> None:
    hubspot = ScriptedServer([])
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        path = f"/api/v1/connectors/{connector['id']}"
        saved = api.put(
            f"{path}/mapping",
            json={
                "mapping": {
                    "version": 2,
                    "fields": [
                        {"target": "email", "source": "email"},
                        {
                            "target": "lead_source",
                            "transforms": [{"type": "constant", "value": "partnerloop"}],
                        },
                        {"target": "partnerloop_order_count", "source": "order_count"},
                        {
                            "target": "hs_tags",
                            "transforms": [{"type": "constant", "value": "affiliate;vip"}],
                        },
                        {
                            "target": "partnerloop_lifetime_value",
                            "source": "lifetime_value",
                            "transforms": [{"type": "money", "format": "decimal"}],
                        },
                    ],
                }
            },
        )
        assert saved.status_code == 200, saved.text
        policies = api.put(
            f"{path}/conflicts",
            json={
                "conflicts": {
                    "lead_source": {"policy": "never_overwrite"},
                    "partnerloop_order_count": {"policy": "newest_wins"},
                    "hs_tags": {"policy": "merge_lists"},
                    "partnerloop_lifetime_value": {
                        "policy": "source_priority",
                        "priority": ["crm", "partnerloop"],
                    },
                }
            },
        )
        bad = api.put(f"{path}/conflicts", json={"conflicts": {"x": {"policy": "coin_flip"}}})
        # The CRM's record was last changed long ago: our newer order count wins.
        hubspot.replies = [
            _read_answer(
                "c@example.com",
                "2020-01-01T00:00:00Z",
                lead_source="Trade fair",
                partnerloop_order_count="7",
                hs_tags="newsletter;affiliate",
                partnerloop_lifetime_value="999.00",
            ),
            accepted(),
        ]
        sale(api, program["id"], "c-1", "25.00", "c@example.com")
        worker(server.runtime, Clock()).drain()
        log = api.get(f"{path}/sync-log").json()["items"]

    assert policies.status_code == 200, policies.text
    assert (bad.status_code, bad.json()["field"]) == (422, "conflicts.x.policy")
    read, written = hubspot.received
    assert read.path == "/crm/v3/objects/contacts/batch/read"
    assert read.json()["idProperty"] == "email"
    assert read.json()["inputs"] == [{"id": "c@example.com"}]
    # Only the fields whose policy let partnerloop win are written.
    assert upserts([written]) == [
        {
            "email": "c@example.com",
            "partnerloop_order_count": "1",
            "hs_tags": "newsletter;affiliate;vip",
        }
    ]
    decisions = {d["field"]: d for d in log}
    assert (decisions["lead_source"]["written"], decisions["lead_source"]["old"]) == (
        False,
        "Trade fair",
    )
    assert decisions["lead_source"]["reason"].startswith("never overwrite")
    assert (
        decisions["partnerloop_order_count"]["old"],
        decisions["partnerloop_order_count"]["new"],
    ) == ("7", "1")
    assert decisions["partnerloop_order_count"]["reason"].startswith("newest wins")
    assert decisions["hs_tags"]["new"] == "newsletter;affiliate;vip"
    assert decisions["partnerloop_lifetime_value"]["written"] is False
    assert decisions["partnerloop_lifetime_value"]["reason"].startswith("source priority")
    assert {d["customer_id"] for d in log} == {log[0]["customer_id"]}
    # The values in the log are personal data: stored encrypted.
    from partnerloop.integrations.models import SyncDecision

    with server.runtime.sessions() as db:
        rows = db.query(SyncDecision).filter_by(connector_id=connector["id"]).all()
    assert rows
    assert all("Trade fair" not in (r.old_enc or "") for r in rows)


def test_the_circuit_breaker_leaves_a_failing_hubspot_alone_for_a_cooldown(
    server: Server,
) -> None:
    hubspot = ScriptedServer([], then=Reply(503))
    clock = Clock()
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        sale(api, program["id"], "b-1", "10.00", "b1@example.com")
        sale(api, program["id"], "b-2", "10.00", "b2@example.com")
        running = worker(server.runtime, clock)
        running.drain()  # both go in one call, which fails: 1 in a row
        for _ in range(4):  # 2, 3, 4, then 5 in a row: the breaker opens
            clock.advance(3600)
            running.drain()
        calls_when_open = len(hubspot.received)
        with server.runtime.sessions() as db:
            opened = db.get_one(Connector, connector["id"])
        assert opened.paused_until == clock.now + timedelta(seconds=30)
        clock.advance(10)
        running.drain()  # open: nothing is sent
        calls_during_cooldown = len(hubspot.received) - calls_when_open
        hubspot.then = accepted()
        clock.now = opened.paused_until + timedelta(seconds=1)
        for _ in range(3):
            running.drain()
            clock.advance(60)
        deliveries = api.get("/api/v1/deliveries", params={"connector_id": connector["id"]}).json()

    assert calls_when_open == 5
    assert {len(body["inputs"]) for body in (r.json() for r in hubspot.received[:5])} == {2}
    assert opened.consecutive_failures == 5
    assert opened.paused_until is not None
    assert calls_during_cooldown == 0
    assert {d["state"] for d in deliveries["items"]} == {"delivered"}
    with server.runtime.sessions() as db:
        assert db.get_one(Connector, connector["id"]).consecutive_failures == 0


def test_the_rate_budget_defers_calls_without_spending_attempts(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from partnerloop.integrations.hubspot.connector import CONNECTOR as HUBSPOT

    # One call every 10 s, 2 at once: the test's own pace cannot earn a third token.
    monkeypatch.setattr(HUBSPOT, "rate_limit", (0.1, 2), raising=False)
    hubspot = ScriptedServer([], then=accepted())
    clock = Clock()
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        running = worker(server.runtime, clock)
        for n in range(3):  # three calls within a second
            sale(api, program["id"], f"r-{n}", "10.00", f"r{n}@example.com")
            clock.catch_up()
            running.drain()
        sent_at_once = len(hubspot.received)
        waiting = api.get(
            "/api/v1/deliveries", params={"connector_id": connector["id"], "state": "pending"}
        ).json()["items"]
        clock.advance(10.5)
        running.drain()

    assert sent_at_once == 2
    [deferred] = waiting
    assert deferred["attempts"] == 0  # waiting for budget is not a failed attempt
    assert "rate budget" in deferred["last_error"]
    assert len(hubspot.received) == 3


def test_two_updates_of_one_contact_never_overtake_each_other(server: Server) -> None:
    import threading

    # The first upsert is slow; the second update of the same contact must wait for it.
    hubspot = ScriptedServer(
        [
            Reply(
                200,
                {"content-type": "application/json"},
                fixture_bytes("hubspot", "docs_contacts-batch-update_response-example.json"),
                delay=1.0,
            )
        ],
        then=accepted(),
    )
    with hubspot.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], hubspot.url)
        sale(api, program["id"], "o-1", "10.00", "order@example.com")
        worker(server.runtime, Clock()).run_once()  # the fan-out: message 1 queued
        first = worker(server.runtime, Clock())
        slow = threading.Thread(target=first.run_once)
        slow.start()
        for _ in range(250):  # until the slow call has reached HubSpot
            if hubspot.received:
                break
            threading.Event().wait(0.02)
        sale(api, program["id"], "o-2", "30.00", "order@example.com")
        second = worker(server.runtime, Clock())
        second.run_once()  # fan-out of the second sale
        second.run_once()  # its delivery: the contact is in flight, so it waits
        calls_while_in_flight = len(hubspot.received)
        waiting = api.get(
            "/api/v1/deliveries", params={"connector_id": connector["id"], "state": "pending"}
        ).json()["items"]
        slow.join(10)
        later = Clock()
        later.advance(2)
        worker(server.runtime, later).drain()

    assert calls_while_in_flight == 1
    [deferred] = [w for w in waiting if w["last_error"]]
    assert (deferred["attempts"], deferred["last_error"]) == (
        0,
        "another delivery of this contact is in flight",
    )
    contacts = upserts(hubspot.received)
    # The slow call carried the state it read (one order); the second, sent only
    # after it, the newest (two orders): HubSpot ends with the newest.
    assert [c["partnerloop_order_count"] for c in contacts] == ["1", "2"]
    assert contacts[-1]["partnerloop_lifetime_value"] == "40.00"  # the newest state last
    with server.runtime.sessions() as db:
        from partnerloop.integrations.models import CrmLink

        [link] = db.query(CrmLink).filter_by(connector_id=connector["id"]).all()
        assert (link.locked_by, link.remote_id) == (None, "512")  # HubSpot's id, from its answer
