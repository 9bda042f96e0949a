"""Outgoing webhooks: Standard Webhooks signatures (checked with the independent
`standardwebhooks` package), at-least-once delivery with backoff and
Retry-After, the attempt log, auto-disable with a notice, replay, sync stats."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from partnerloop.core.db import transaction
from partnerloop.integrations.models import Connector
from partnerloop.runtime import Runtime
from partnerloop.sync.models import OutboxMessage
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.clock import Clock, worker
from tests.support.http import Received, Reply, ScriptedServer


def endpoint(api: httpx.Client, program_id: str, url: str, **settings: Any) -> dict[str, Any]:
    response = api.post(
        "/api/v1/connectors",
        json={"program_id": program_id, "kind": "webhook", "settings": {"url": url, **settings}},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def attributed_sale(api: httpx.Client, program_id: str, order_id: str) -> dict[str, Any]:
    affiliate = create_affiliate_api(api, program_id)
    link = create_link_api(api, program_id, affiliate["id"])
    return report_order(api, program_id, order_id, "100.00", click_id=click(api, link["code"]))


def verified(secret: str, request: Received) -> dict[str, Any]:
    """What an independent Standard Webhooks receiver makes of the request."""
    headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    return dict(Webhook(secret).verify(request.body, headers))


def signed_by(secret: str, request: Received) -> dict[str, Any]:
    """The same check for requests sent at a moved clock (verify() compares the
    timestamp with the real time): the library's own signature must be among ours."""
    stamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(secret).sign(request.headers["webhook-id"], stamp, request.body.decode())
    assert expected in request.headers["webhook-signature"].split(" ")
    return dict(json.loads(request.body))


def test_events_are_delivered_signed_the_standard_webhooks_way(server: Server) -> None:
    receiver = ScriptedServer([])
    clock = Clock()
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], f"{receiver.url}/in")
        shown_again = api.get(f"/api/v1/connectors/{hook['id']}").json()
        sale = attributed_sale(api, program["id"], "wh-1")

        ran = worker(server.runtime, clock).drain()

    assert ran >= 3
    assert hook["secret"].startswith("whsec_")
    assert (hook["direction"], hook["status"], hook["webhook_url"]) == ("out", "active", None)
    assert shown_again["secret"] is None  # shown once
    bodies = [verified(hook["secret"], r) for r in receiver.received]
    assert sorted(b["type"] for b in bodies) == [
        "affiliate.approved",
        "commission.created",
        "conversion.created",
    ]
    conversion = next(b for b in bodies if b["type"] == "conversion.created")
    assert conversion["program_id"] == program["id"]
    assert (conversion["data"]["id"], conversion["data"]["amount"]) == (sale["id"], "100.00")
    commission = next(b for b in bodies if b["type"] == "commission.created")
    assert (commission["data"]["amount"], commission["data"]["state"]) == ("10.00", "pending")
    request = receiver.received[0]
    assert request.path == "/in"
    assert request.headers["content-type"] == "application/json"
    assert int(request.headers["webhook-timestamp"]) == int(clock.now.timestamp())
    # A wrong secret or a changed body does not verify.
    other = "whsec_" + "A" * 43 + "="
    with pytest.raises(WebhookVerificationError):
        verified(other, request)
    with pytest.raises(WebhookVerificationError):
        verified(hook["secret"], dataclasses.replace(request, body=request.body + b" "))


def test_an_endpoint_gets_only_the_events_it_subscribed_to(server: Server) -> None:
    receiver = ScriptedServer([])
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["commission.created"])
        attributed_sale(api, program["id"], "wh-2")
        worker(server.runtime, Clock()).drain()
        bad = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "webhook",
                "settings": {"url": receiver.url, "events": ["order.shipped"]},
            },
        )

    assert hook["settings"]["events"] == ["commission.created"]
    assert [verified(hook["secret"], r)["type"] for r in receiver.received] == [
        "commission.created"
    ]
    assert (bad.status_code, bad.json()["code"], bad.json()["field"]) == (
        422,
        "unknown_event_type",
        "settings.events",
    )


def _messages(runtime: Runtime, connector_id: str) -> list[OutboxMessage]:
    with runtime.sessions() as db:
        return list(
            db.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.destination_id == connector_id)
                .order_by(OutboxMessage.id)
            )
        )


def test_a_receiver_that_is_down_gets_every_event_once_when_it_is_back(server: Server) -> None:
    receiver = ScriptedServer([Reply(503), Reply(503), Reply(500)], then=Reply(204, body=b""))
    clock = Clock()
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        report_order(api, program["id"], "down-1", "10.00")
        running = worker(server.runtime, clock)

        running.drain()  # first try: 503
        [message] = _messages(server.runtime, hook["id"])
        assert (message.state, message.attempts) == ("retry", 1)
        for _ in range(6):  # backoff: 1-2 s, 2-4 s, 4-8 s, ...
            clock.advance(3600)
            running.drain()
        delivery = api.get(f"/api/v1/deliveries/{message.id}").json()
        listed = api.get(
            "/api/v1/deliveries", params={"connector_id": hook["id"], "state": "delivered"}
        ).json()

    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [ids[0]] * 4  # the same webhook-id on every retry: receivers dedupe on it
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 4)
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in delivery["attempt_log"]] == [
        (1, 503, "retry"),
        (2, 503, "retry"),
        (3, 500, "retry"),
        (4, 204, "delivered"),
    ]
    assert all(a["duration_ms"] >= 0 for a in delivery["attempt_log"])
    assert [d["id"] for d in listed["items"]] == [message.id]


def test_retry_after_is_honoured_to_the_second(server: Server) -> None:
    receiver = ScriptedServer([Reply(429, {"Retry-After": "120"}, b'{"error":"slow down"}')])
    clock = Clock()
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        report_order(api, program["id"], "slow-1", "10.00")
        running = worker(server.runtime, clock)

        running.drain()
        [message] = _messages(server.runtime, hook["id"])
        clock.advance(119)
        running.drain()
        asked_before = len(receiver.received)
        clock.advance(2)
        running.drain()
        delivery = api.get(f"/api/v1/deliveries/{message.id}").json()

    assert message.next_attempt_at == _first_attempt(delivery) + timedelta(seconds=120)
    assert asked_before == 1  # nothing before the time the receiver named
    assert len(receiver.received) == 2
    assert delivery["state"] == "delivered"
    assert delivery["attempt_log"][0]["response"] == '{"error":"slow down"}'


def _first_attempt(delivery: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(delivery["attempt_log"][0]["started_at"].replace("Z", "+00:00"))


def test_an_endpoint_that_keeps_failing_is_disabled_with_a_notice_and_replayable(
    server: Server,
) -> None:
    receiver = ScriptedServer([], then=Reply(500))
    watcher = ScriptedServer([])
    clock = Clock()
    with receiver.running(), watcher.running(), server.client() as api:
        program = create_program_api(api)
        failing = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        # Another endpoint of the merchant hears about it.
        notices = endpoint(api, program["id"], watcher.url, events=["connector.disabled"])
        report_order(api, program["id"], "fail-1", "10.00")
        running = worker(server.runtime, clock, webhook_disable_after=3)

        running.drain()
        for _ in range(3):
            clock.advance(3600)
            running.drain()
        disabled = api.get(f"/api/v1/connectors/{failing['id']}").json()
        [message] = _messages(server.runtime, failing["id"])[:1]
        stats = api.get("/api/v1/sync/stats", params={"program_id": program["id"]}).json()

        receiver.then = Reply(200)
        enabled = api.post(f"/api/v1/connectors/{failing['id']}/enable")
        replayed = api.post(f"/api/v1/deliveries/{message.id}/replay")
        running.drain()
        after = api.get(f"/api/v1/deliveries/{message.id}").json()

    assert len(receiver.received) == 4  # 3 failures, then (after enabling) the replay
    assert (disabled["status"], disabled["disabled_reason"]) == (
        "disabled",
        "3 failed deliveries in a row (last: the endpoint answered 500)",
    )
    notice = signed_by(notices["secret"], watcher.received[0])
    assert notice["type"] == "connector.disabled"
    assert notice["data"]["id"] == failing["id"]
    assert message.state == "dead"
    assert "disabled" in (message.last_error or "")
    by_connector = {s["connector_id"]: s for s in stats["items"]}
    assert (by_connector[failing["id"]]["dead"], by_connector[failing["id"]]["backlog"]) == (1, 0)
    assert (enabled.json()["status"], replayed.json()["state"]) == ("active", "pending")
    assert after["state"] == "delivered"


def test_a_success_ends_a_run_of_failures(server: Server) -> None:
    # 2 failures then a success (order 1), then 2 more failures (order 2): never 3
    # in a row, so the endpoint stays enabled.
    receiver = ScriptedServer([Reply(500), Reply(500), Reply(204)], then=Reply(500))
    clock = Clock()
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        running = worker(server.runtime, clock, webhook_disable_after=3)
        for order, tries in (("streak-1", 3), ("streak-2", 2)):
            report_order(api, program["id"], order, "10.00")
            for _ in range(tries):
                clock.advance(3600)
                running.drain()
        shown = api.get(f"/api/v1/connectors/{hook['id']}").json()

    states = [(m.state, m.attempts) for m in _messages(server.runtime, hook["id"])]
    assert sorted(states) == [("delivered", 3), ("retry", 2)]
    assert len(receiver.received) == 5  # 500, 500, 204, then 500, 500
    assert (shown["status"], shown["disabled_reason"]) == ("active", None)


def test_410_gone_disables_at_once(server: Server) -> None:
    receiver = ScriptedServer([Reply(410)])
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        report_order(api, program["id"], "gone-1", "10.00")
        worker(server.runtime, Clock()).drain()
        shown = api.get(f"/api/v1/connectors/{hook['id']}").json()

    [message] = _messages(server.runtime, hook["id"])
    assert (shown["status"], shown["disabled_reason"]) == (
        "disabled",
        "the endpoint answered 410 Gone",
    )
    assert (message.state, message.attempts) == ("dead", 1)


def test_during_a_rotation_both_secrets_verify(server: Server) -> None:
    receiver = ScriptedServer([])
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        rotated = api.post(f"/api/v1/connectors/{hook['id']}/secret", json={}).json()
        report_order(api, program["id"], "rot-1", "10.00")
        worker(server.runtime, Clock()).drain()

    [request] = receiver.received
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != hook["secret"]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verified(hook["secret"], request) == verified(rotated["secret"], request)


def test_a_secret_rotated_between_two_passes_of_one_worker_signs_the_second(
    server: Server,
) -> None:
    # The worker reads an endpoint once per pass over its messages; the next pass
    # must see what changed in between.
    receiver = ScriptedServer([])
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        clock = Clock()
        running = worker(server.runtime, clock)
        report_order(api, program["id"], "pass-1", "10.00")
        clock.catch_up()
        running.drain()
        rotated = api.post(f"/api/v1/connectors/{hook['id']}/secret", json={}).json()
        report_order(api, program["id"], "pass-2", "10.00")
        clock.catch_up()
        running.drain()

    first, second = receiver.received
    assert len(first.headers["webhook-signature"].split(" ")) == 1
    assert verified(hook["secret"], first)["data"]["order_id"] == "pass-1"
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    assert verified(rotated["secret"], second)["data"]["order_id"] == "pass-2"


def test_endpoints_added_or_changed_between_two_passes_are_asked_in_the_second(
    server: Server,
) -> None:
    # The worker reads a program's endpoints once per pass over its events; the
    # next pass must see an endpoint added and a subscription changed in between.
    receiver = ScriptedServer([])
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        first = endpoint(api, program["id"], f"{receiver.url}/a", events=["conversion.created"])
        clock = Clock()
        running = worker(server.runtime, clock)
        report_order(api, program["id"], "asked-1", "10.00")
        clock.catch_up()
        running.drain()
        second = endpoint(api, program["id"], f"{receiver.url}/b", events=["conversion.created"])
        with transaction(server.runtime.sessions) as db:
            db.get_one(Connector, first["id"]).settings = {
                "url": f"{receiver.url}/a",
                "events": ["commission.created"],
            }
        report_order(api, program["id"], "asked-2", "10.00")
        clock.catch_up()
        running.drain()

    secrets = {"/a": first["secret"], "/b": second["secret"]}
    got = [(r.path, verified(secrets[r.path], r)["data"]["order_id"]) for r in receiver.received]
    assert got == [("/a", "asked-1"), ("/b", "asked-2")]


def test_an_endpoint_disabled_by_one_message_gets_no_more_of_the_same_pass(
    server: Server,
) -> None:
    receiver = ScriptedServer([Reply(410)], then=Reply(204))
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        report_order(api, program["id"], "gone-a", "10.00")
        report_order(api, program["id"], "gone-b", "10.00")
        worker(server.runtime, Clock()).drain()

    messages = _messages(server.runtime, hook["id"])
    assert len(receiver.received) == 1
    assert [(m.state, m.attempts) for m in messages] == [("dead", 1), ("dead", 1)]
    assert sorted("disabled" in (m.last_error or "") for m in messages) == [False, True]


def test_a_given_secret_must_be_a_standard_webhooks_secret(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        answers = [
            api.post(
                "/api/v1/connectors",
                json={
                    "program_id": program["id"],
                    "kind": "webhook",
                    "settings": {"url": "https://hooks.example.com/x"},
                    "secret": secret,
                },
            )
            for secret in ("plain-text", "whsec_" + "A" * 8, "whsec_" + "QUJD" * 8)
        ]
    assert [a.status_code for a in answers] == [422, 422, 201]
    assert answers[2].json()["secret"] == "whsec_" + "QUJD" * 8


def test_sync_times_reach_the_api_and_metrics(server: Server) -> None:
    receiver = ScriptedServer([])
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(api, program["id"], receiver.url, events=["conversion.created"])
        for n in range(4):
            report_order(api, program["id"], f"fast-{n}", "10.00")
        clock = Clock()  # after every event
        clock.advance(2)  # each delivery is accepted 2 s (and a little) after its event
        worker(server.runtime, clock).drain()
        stats = api.get("/api/v1/sync/stats", params={"program_id": program["id"]}).json()
        metrics = httpx.get(f"{server.url}/metrics").text

    [mine] = [s for s in stats["items"] if s["connector_id"] == hook["id"]]
    assert (mine["kind"], mine["delivered_24h"], mine["backlog"], mine["dead"]) == (
        "webhook",
        4,
        0,
        0,
    )
    assert 2000 <= mine["latency_p50_ms"] <= mine["latency_p95_ms"] < 10_000
    assert f'partnerloop_delivery_backlog{{kind="webhook",connector="{hook["id"]}"}} 0' in metrics
    p95 = f'partnerloop_delivery_latency_p95_seconds{{kind="webhook",connector="{hook["id"]}"}}'
    assert p95 in metrics
    body = json.loads(receiver.received[0].body)
    assert set(body) == {"type", "timestamp", "program_id", "data"}


def test_affiliate_decisions_are_announced_to_each_of_their_programs(server: Server) -> None:
    receiver = ScriptedServer([])
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        hook = endpoint(
            api, program["id"], receiver.url, events=["affiliate.approved", "affiliate.suspended"]
        )
        affiliate = create_affiliate_api(api, program["id"])  # approved by the factory
        suspended = api.post(f"/api/v1/affiliates/{affiliate['id']}/suspend")
        worker(server.runtime, Clock()).drain()

    assert suspended.status_code == 200, suspended.text
    events = [verified(hook["secret"], r) for r in receiver.received]
    assert sorted((e["type"], e["data"]["id"], e["data"]["status"]) for e in events) == [
        ("affiliate.approved", affiliate["id"], "approved"),
        ("affiliate.suspended", affiliate["id"], "suspended"),
    ]
    # No personal data in the event itself.
    assert all(set(e["data"]) == {"id", "status"} for e in events)
