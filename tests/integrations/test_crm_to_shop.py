"""CRM -> shop: a lifecycle stage set in HubSpot (or a Salesforce field, polled)
reaches the Shopify customer as a tag, through the CRM's signed webhook (or the
poll), the inbox, the worker and the delivery engine, against local servers
that answer with the vendors' published payloads."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.integrations import connectors, crm_to_shop
from partnerloop.integrations.models import Connector, CrmLink
from partnerloop.integrations.registry import POLLING_CRMS, WRITING_SHOPS
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Worker
from tests.conftest import Server
from tests.factories.connectors import (
    create_connector_api,
    fixture_bytes,
    fixture_json,
    hook_path,
    inbound_events,
)
from tests.factories.programs import create_program_api
from tests.factories.shopify import SECRET, SHOP, deliver, paid_order
from tests.integrations.test_pipedrive import TOKEN as PIPEDRIVE_TOKEN
from tests.integrations.test_pipedrive import no_person, person
from tests.support.clock import Clock, worker
from tests.support.http import Received, Reply, ScriptedServer

CLIENT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
CONTACT_ID = "512"  # the id in HubSpot's batch answer example
JSON = {"content-type": "application/json"}
CUSTOMER_PATH = "/admin/api/2026-04/customers/115310627314723950.json"


def hubspot_answer(email: str) -> Reply:
    """HubSpot's documented batch answer, for our contact (its id is what links the
    CRM's later webhooks to our customer)."""
    body = fixture_json("hubspot", "docs_contacts-batch-update_response-example.json")
    body["status"] = "COMPLETE"
    body["errors"], body["numErrors"] = [], 0
    body["results"][0]["properties"] = {"email": email}
    return Reply(200, JSON, json.dumps(body).encode())


def shopify_customer(tags: str) -> Reply:
    """Shopify's REST customer fixture as the shop holds it now."""
    body = json.loads(fixture_bytes("shopify", "rest-fixture_customer.json"))
    body["customer"].update(id=115310627314723950, tags=tags)
    return Reply(200, JSON, json.dumps(body).encode())


def sign_v3(url: str, body: bytes, timestamp: str) -> str:
    # Written out here from HubSpot's docs, independently of the connector.
    message = b"POST" + url.encode() + body + timestamp.encode()
    return base64.b64encode(
        hmac.new(CLIENT_SECRET.encode(), message, hashlib.sha256).digest()
    ).decode()


def property_change(value: str, *, event_id: int, occurred_ms: int) -> dict[str, Any]:
    # The shape of HubSpot's contact.propertyChange event (webhooks API docs).
    return {
        "eventId": event_id,
        "subscriptionId": 12345,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": occurred_ms,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": int(CONTACT_ID),
        "propertyName": "lifecyclestage",
        "propertyValue": value,
        "changeSource": "CRM",
    }


def send_hubspot(
    api: httpx.Client, connector: dict[str, Any], events: list[dict[str, Any]], **overrides: str
) -> httpx.Response:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time() * 1000))
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sign_v3(connector["webhook_url"], body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
        **overrides,
    }
    return api.post(hook_path(connector), content=body, headers=headers)


def loop(api: httpx.Client, shopify_url: str, hubspot_url: str) -> tuple[dict[str, Any], ...]:
    program = create_program_api(api, currency="USD")
    shop = create_connector_api(
        api,
        program["id"],
        "shopify",
        secret=SECRET,
        settings={"shop_domain": SHOP, "api_base_url": shopify_url},
        credentials={"access_token": "shpat_test"},
    )
    hubspot = create_connector_api(
        api,
        program["id"],
        "hubspot",
        secret=CLIENT_SECRET,
        settings={"api_base_url": hubspot_url, "write_back": ["lifecyclestage"]},
        credentials={"access_token": "pat-test"},
    )
    return program, shop, hubspot


def buy(api: httpx.Client, server: Server, shop: dict[str, Any], clock: Clock) -> None:
    """A Shopify order whose customer partnerloop then upserts into HubSpot."""
    order = paid_order(820982911946154508)
    response = deliver(api, shop, "orders/create", json.dumps(order).encode(), event_id="ev-buy")
    assert response.status_code == 200, response.text
    worker(server.runtime, clock).drain()


def writes(received: list[Received]) -> list[tuple[str, str, Any]]:
    return [
        (r.method, r.path, r.json() if r.body else None)
        for r in received
        if r.path == CUSTOMER_PATH
    ]


def test_a_lifecycle_stage_set_in_hubspot_becomes_a_shopify_customer_tag(server: Server) -> None:
    hubspot = ScriptedServer([], then=hubspot_answer("john@example.com"))
    shopify = ScriptedServer(
        [shopify_customer("loyal, crm:lifecyclestage:lead"), shopify_customer("")]
    )
    clock = Clock()
    with hubspot.running(), shopify.running(), server.client() as api:
        _, shop, crm = loop(api, shopify.url, hubspot.url)
        buy(api, server, shop, clock)
        now_ms = int(time.time() * 1000)
        first = send_hubspot(
            api, crm, [property_change("customer", event_id=7, occurred_ms=now_ms)]
        )
        again = send_hubspot(
            api, crm, [property_change("customer", event_id=7, occurred_ms=now_ms)]
        )
        clock.catch_up()
        worker(server.runtime, clock).drain()

    # The contact was linked by HubSpot's own id, the webhook stored once...
    with server.runtime.sessions() as db:
        [link] = db.query(CrmLink).filter_by(connector_id=crm["id"]).all()
        [message] = db.query(OutboxMessage).filter_by(destination_id=shop["id"]).all()
    assert link.remote_id == CONTACT_ID
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    # ...and the Shopify customer got the stage as a tag, its own tags kept and the
    # old stage's tag replaced, in one read and one write.
    assert writes(shopify.received) == [
        ("GET", CUSTOMER_PATH, None),
        (
            "PUT",
            CUSTOMER_PATH,
            {"customer": {"id": 115310627314723950, "tags": "loyal, crm:lifecyclestage:customer"}},
        ),
    ]
    assert shopify.received[1].headers["x-shopify-access-token"] == "shpat_test"
    assert message.state == "delivered"


def test_a_late_older_change_does_not_overwrite_a_newer_one(server: Server) -> None:
    hubspot = ScriptedServer([], then=hubspot_answer("john@example.com"))
    shopify = ScriptedServer(
        [shopify_customer(""), shopify_customer("")],
        then=shopify_customer("crm:lifecyclestage:evangelist"),
    )
    clock = Clock()
    with hubspot.running(), shopify.running(), server.client() as api:
        _, shop, crm = loop(api, shopify.url, hubspot.url)
        buy(api, server, shop, clock)
        now_ms = int(time.time() * 1000)
        newer = property_change("evangelist", event_id=9, occurred_ms=now_ms)
        older = property_change("lead", event_id=8, occurred_ms=now_ms - 60_000)
        send_hubspot(api, crm, [newer])
        clock.catch_up()
        worker(server.runtime, clock).drain()
        send_hubspot(api, crm, [older])  # HubSpot's retry of an earlier event, late
        clock.catch_up()
        worker(server.runtime, clock).drain()

    puts = [body for method, _, body in writes(shopify.received) if method == "PUT"]
    assert puts == [
        {"customer": {"id": 115310627314723950, "tags": "crm:lifecyclestage:evangelist"}}
    ]
    with server.runtime.sessions() as db:
        messages = db.query(OutboxMessage).filter_by(destination_id=shop["id"]).all()
    assert len(messages) == 1  # the late event changed nothing: nothing queued


def test_shop_credentials_changed_between_two_passes_are_used_by_the_second(
    server: Server,
) -> None:
    # The worker reads a shop connector once per pass over its write-backs; the
    # next pass must use what changed in between (a new access token).
    hubspot = ScriptedServer([], then=hubspot_answer("john@example.com"))
    shopify = ScriptedServer([], then=shopify_customer(""))
    clock = Clock()
    with hubspot.running(), shopify.running(), server.client() as api:
        _, shop, crm = loop(api, shopify.url, hubspot.url)
        buy(api, server, shop, clock)
        running = worker(server.runtime, clock)
        now_ms = int(time.time() * 1000)
        send_hubspot(api, crm, [property_change("lead", event_id=11, occurred_ms=now_ms)])
        clock.catch_up()
        running.drain()
        with transaction(server.runtime.sessions) as db:
            connectors.save_credentials(
                server.runtime.cipher,
                db.get_one(Connector, shop["id"]),
                {"access_token": "shpat_rotated"},
                now=utcnow(),
            )
        later = property_change("customer", event_id=12, occurred_ms=now_ms + 1000)
        send_hubspot(api, crm, [later])
        clock.catch_up()
        running.drain()

    puts = [r for r in shopify.received if r.method == "PUT" and r.path == CUSTOMER_PATH]
    assert [r.headers["x-shopify-access-token"] for r in puts] == ["shpat_test", "shpat_rotated"]
    assert [r.json()["customer"]["tags"] for r in puts] == [
        "crm:lifecyclestage:lead",
        "crm:lifecyclestage:customer",
    ]


def test_a_bad_signature_is_refused_and_nothing_is_stored(server: Server) -> None:
    with server.client() as api:
        program, _, crm = loop(api, "http://127.0.0.1:9", "http://127.0.0.1:9")
        forged = send_hubspot(
            api,
            crm,
            [property_change("customer", event_id=1, occurred_ms=int(time.time() * 1000))],
            **{"X-HubSpot-Signature-v3": base64.b64encode(b"0" * 32).decode()},
        )
        events = inbound_events(api, program["id"])

    assert forged.status_code == 401
    assert forged.json()["code"] == "invalid_signature"
    assert events == []


def test_a_contact_partnerloop_never_sent_is_ignored(server: Server) -> None:
    shopify = ScriptedServer([])
    clock = Clock()
    with shopify.running(), server.client() as api:
        program, _, crm = loop(api, shopify.url, "http://127.0.0.1:9")
        stored = send_hubspot(
            api, crm, [property_change("customer", event_id=3, occurred_ms=int(time.time() * 1000))]
        )
        clock.catch_up()
        worker(server.runtime, clock).drain()
        [event] = inbound_events(api, program["id"])

    assert stored.status_code == 200
    assert event["state"] == "processed"
    assert shopify.received == []


def test_a_shop_that_is_down_gets_the_write_once_it_is_back(server: Server) -> None:
    hubspot = ScriptedServer([], then=hubspot_answer("john@example.com"))
    shopify = ScriptedServer(
        [Reply(503), Reply(502), shopify_customer("")], then=shopify_customer("")
    )
    clock = Clock()
    with hubspot.running(), shopify.running(), server.client() as api:
        _, shop, crm = loop(api, shopify.url, hubspot.url)
        buy(api, server, shop, clock)
        send_hubspot(
            api, crm, [property_change("customer", event_id=5, occurred_ms=int(time.time() * 1000))]
        )
        clock.catch_up()
        running = worker(server.runtime, clock)
        for _ in range(4):
            running.drain()
            clock.advance(3600)
        [delivery] = api.get("/api/v1/deliveries", params={"connector_id": shop["id"]}).json()[
            "items"
        ]

    puts = [body for method, _, body in writes(shopify.received) if method == "PUT"]
    assert puts == [{"customer": {"id": 115310627314723950, "tags": "crm:lifecyclestage:customer"}}]
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 3)


# --- Salesforce: polled, no webhooks ----------------------------------------------------

SF_FIELD = "Picklist_Multiselect_Label"  # a multi-select picklist in Salesforce's fixture


def salesforce_changes(stamp: str) -> Reply:
    """Salesforce's query answer (the restforce fixture's record, as our upserted
    Contact "foo" with its SystemModstamp)."""
    body = fixture_json("salesforce", "restforce_query-success.json")
    [record] = body["records"]
    record["attributes"] = {"type": "Contact", "url": "/services/data/v60.0/sobjects/Contact/foo"}
    record.update(Id="foo", SystemModstamp=stamp)
    return Reply(200, JSON, json.dumps(body).encode())


def no_polling_worker(server: Server, clock: Clock) -> Worker:
    """A worker without background tasks: the test polls Salesforce itself, in order."""
    clock.catch_up()
    registry = dataclasses.replace(server.runtime.registry(clock=clock), background=())
    return server.runtime.make_worker(registry=registry, clock=clock)


def poll(server: Server, now: datetime) -> int:
    return crm_to_shop.poll_due(
        server.runtime.sessions,
        server.runtime.cipher,
        POLLING_CRMS,
        WRITING_SHOPS,
        client_factory=lambda: httpx.Client(timeout=5),
        now=now,
    )


def test_a_salesforce_field_is_polled_and_becomes_shopify_tags(server: Server) -> None:
    upserted = Reply(201, JSON, fixture_bytes("salesforce", "restforce_upsert-created_201.json"))
    salesforce = ScriptedServer(
        [upserted, salesforce_changes("2026-11-24T09:30:00.000+0000")],
        then=Reply(200, JSON, b'{"totalSize": 0, "done": true, "records": []}'),
    )
    shopify = ScriptedServer([shopify_customer("vip"), shopify_customer("")])
    clock = Clock()
    with salesforce.running(), shopify.running(), server.client() as api:
        program = create_program_api(api, currency="USD")
        shop = create_connector_api(
            api,
            program["id"],
            "shopify",
            secret=SECRET,
            settings={"shop_domain": SHOP, "api_base_url": shopify.url},
            credentials={"access_token": "shpat_test"},
        )
        crm = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "salesforce",
                "settings": {
                    "instance_url": salesforce.url,
                    "write_back": [SF_FIELD],
                    "pull_every_minutes": 5,
                },
                "credentials": {"access_token": "00D-test"},
            },
        ).json()
        order = paid_order(820982911946154508)
        deliver(api, shop, "orders/create", json.dumps(order).encode(), event_id="ev-sf")
        no_polling_worker(server, clock).drain()
        first = utcnow()
        changed = poll(server, first)
        again_at_once = poll(server, first + timedelta(seconds=30))  # not due yet
        later = poll(server, first + timedelta(minutes=6))
        no_polling_worker(server, clock).drain()

    queries = [r for r in salesforce.received if r.method == "GET"]
    assert (changed, again_at_once, later) == (1, 0, 0)
    assert len(queries) == 2
    [soql] = parse_qs(urlsplit(queries[0].path).query)["q"]
    assert soql.startswith(
        "SELECT Id, Picklist_Multiselect_Label, SystemModstamp FROM Contact "
        "WHERE Partnerloop_Customer_Id__c != null AND SystemModstamp >= "
    )
    assert soql.endswith(" ORDER BY SystemModstamp, Id LIMIT 2000")
    # The second poll starts at the newest change the first one saw.
    [soql] = parse_qs(urlsplit(queries[1].path).query)["q"]
    assert "SystemModstamp >= 2026-11-24T09:30:00Z " in soql
    with server.runtime.sessions() as db:
        [link] = db.query(CrmLink).filter_by(connector_id=crm["id"]).all()
    assert link.remote_id == "foo"
    assert writes(shopify.received)[1] == (
        "PUT",
        CUSTOMER_PATH,
        {
            "customer": {
                "id": 115310627314723950,
                "tags": f"vip, crm:{SF_FIELD}:four, crm:{SF_FIELD}:six",
            }
        },
    )


# --- Pipedrive: webhooks v2 with HTTP Basic auth ----------------------------------------

SEGMENT_KEY = "d4de1c1518b4531717c676029a45911c340390a6"  # a person custom field's key
HOOK_AUTH = "partnerloop:s3cret-hook-pass"


def pipedrive_person_change(person_id: int, segment: str, *, event_id: str) -> bytes:
    # Webhooks v2 `change.person`: meta as in the real capture (captured_webhook-v2_*),
    # data as Pipedrive's v2 person with a varchar custom field.
    return json.dumps(
        {
            "data": {
                "id": person_id,
                "name": "John Smith",
                "first_name": "John",
                "last_name": "Smith",
                "owner_id": 26510409,
                "org_id": None,
                "label_ids": [],
                "custom_fields": {SEGMENT_KEY: {"type": "varchar", "value": segment}},
                "update_time": "2026-11-24T10:00:00Z",
            },
            "previous": {"custom_fields": {SEGMENT_KEY: None}},
            "meta": {
                "action": "change",
                "company_id": "15747575",
                "correlation_id": "ac082c9f-fb53-47e5-a1a6-227c2fccd657",
                "entity_id": str(person_id),
                "entity": "person",
                "id": event_id,
                "is_bulk_edit": False,
                "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
                "type": "general",
                "user_id": "26510409",
                "version": "2.0",
                "webhook_id": "1872755",
                "webhook_owner_id": "26510409",
                "change_source": "app",
                "permitted_user_ids": ["26510409"],
                "attempt": 1,
                "host": "acme.pipedrive.com",
            },
        }
    ).encode()


def test_a_pipedrive_segment_reaches_shopify_through_an_authenticated_webhook(
    server: Server,
) -> None:
    pipedrive = ScriptedServer([no_person(), person(201, 179, "john@example.com")])
    shopify = ScriptedServer([shopify_customer(""), shopify_customer("")])
    clock = Clock()
    with pipedrive.running(), shopify.running(), server.client() as api:
        program = create_program_api(api, currency="USD")
        shop = create_connector_api(
            api,
            program["id"],
            "shopify",
            secret=SECRET,
            settings={"shop_domain": SHOP, "api_base_url": shopify.url},
            credentials={"access_token": "shpat_test"},
        )
        crm = create_connector_api(
            api,
            program["id"],
            "pipedrive",
            secret=HOOK_AUTH,
            settings={"api_base_url": pipedrive.url, "write_back": [SEGMENT_KEY]},
            credentials={"api_token": PIPEDRIVE_TOKEN},
        )
        buy(api, server, shop, clock)
        body = pipedrive_person_change(179, "gold", event_id="8818e477-972e-4ddb-8d8e-cb61a933db4e")
        headers = {"Content-Type": "application/json", "User-Agent": "Pipedrive Webhooks"}
        unauthenticated = api.post(hook_path(crm), content=body, headers=headers)
        wrong = api.post(hook_path(crm), content=body, headers=headers, auth=("partnerloop", "x"))
        stored = api.post(
            hook_path(crm), content=body, headers=headers, auth=tuple(HOOK_AUTH.split(":", 1))
        )
        clock.catch_up()
        worker(server.runtime, clock).drain()

    assert (unauthenticated.status_code, wrong.status_code) == (401, 401)
    assert stored.json()["status"] == "accepted"
    assert writes(shopify.received)[1] == (
        "PUT",
        CUSTOMER_PATH,
        {"customer": {"id": 115310627314723950, "tags": f"crm:{SEGMENT_KEY}:gold"}},
    )


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"write_back": [SF_FIELD]}, "settings.pull_every_minutes"),
        ({"write_back": ["Segment; DROP"], "pull_every_minutes": 5}, "settings.write_back"),
    ],
)
def test_a_salesforce_write_back_that_could_never_work_is_refused(
    server: Server, settings: dict[str, Any], field: str
) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "salesforce",
                "settings": {"instance_url": "https://acme.my.salesforce.com", **settings},
                "credentials": {"access_token": "00D-test"},
            },
        )

    assert response.status_code == 422
    assert response.json()["field"] == field
