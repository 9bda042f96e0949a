"""Salesforce: customers upserted as Contacts by our customer id (an External ID
field), against a local server answering with Salesforce's published bodies
(../shared/fixtures/salesforce), with its token refresh, duplicate rules,
limits and errors handled as NOTES.md section 6 says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import select

from partnerloop.integrations import connectors
from partnerloop.integrations.crm import Verdict
from partnerloop.integrations.models import Connector
from partnerloop.integrations.salesforce.connector import CONNECTOR
from partnerloop.orders.models import Conversion
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.connectors import fixture_bytes
from tests.factories.orders import customer_sale as sale
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.clock import Clock, worker
from tests.support.http import Received, Reply, ScriptedServer

API = "/services/data/v60.0"
KEY = "Partnerloop_Customer_Id__c"
TOKEN = "00Dx0000000BV7z!old-access-token"
CREDENTIALS = {
    "access_token": TOKEN,
    "refresh_token": "5Aep861refresh",
    "client_id": "3MVG9client",
    "client_secret": "client-secret-1",
}
# The access token in restforce_oauth-token-success.json.
NEW_TOKEN = json.loads(fixture_bytes("salesforce", "restforce_oauth-token-success.json"))[
    "access_token"
]


def fixture(status: int, name: str) -> Reply:
    return Reply(
        status,
        {"content-type": "application/json;charset=UTF-8"},
        fixture_bytes("salesforce", name),
    )


def created() -> Reply:
    return fixture(201, "restforce_upsert-created_201.json")


def errors(status: int, code: str, message: str) -> Reply:
    # The error array NOTES.md section 6 documents (bodies quoted there).
    body = json.dumps([{"message": message, "errorCode": code}]).encode()
    return Reply(status, {"content-type": "application/json;charset=UTF-8"}, body)


def connect(
    api: httpx.Client,
    program_id: str,
    url: str,
    *,
    credentials: dict[str, str] | None = None,
    **settings: str,
) -> dict[str, Any]:
    response = api.post(
        "/api/v1/connectors",
        json={
            "program_id": program_id,
            "kind": "salesforce",
            "settings": {"instance_url": url, **settings},
            "credentials": credentials or CREDENTIALS,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def customer_of(server: Server, program_id: str, order_id: str) -> str:
    with server.runtime.sessions() as db:
        customer_id = db.scalars(
            select(Conversion.customer_id).where(
                Conversion.program_id == program_id, Conversion.order_id == order_id
            )
        ).one()
    assert customer_id is not None
    return customer_id


def upserts(received: list[Received], customer_id: str, token: str = TOKEN) -> list[Received]:
    """Check every request is the documented upsert of this customer; return them."""
    for request in received:
        assert request.method == "PATCH"
        assert request.path == f"{API}/sobjects/Contact/{KEY}/{customer_id}"
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["content-type"] == "application/json"
        body = request.json()
        assert isinstance(body, dict)
        # The key is in the URL, never in the body (Salesforce refuses it there).
        assert KEY not in body
    return received


def deliveries(api: httpx.Client, connector_id: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/deliveries", params={"connector_id": connector_id})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_a_referred_customer_becomes_a_salesforce_contact(server: Server) -> None:
    salesforce = ScriptedServer([], then=created())
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        affiliate = create_affiliate_api(api, program["id"], name="Anna de Vries")
        link = create_link_api(api, program["id"], affiliate["id"])
        order = sale(
            api,
            program["id"],
            "sf-1",
            "100.00",
            "Jan@Example.com",
            click_id=click(api, link["code"]),
        )
        worker(server.runtime, Clock()).drain()
        customer = customer_of(server, program["id"], "sf-1")
        first = [r.json() for r in upserts(salesforce.received, customer)]
        sale(api, program["id"], "sf-2", "50.25", "jan@example.com")
        worker(server.runtime, Clock()).drain()
        latest = upserts(salesforce.received[1:], customer)[-1].json()
        done = deliveries(api, connector["id"])

    assert order["affiliate_id"] == affiliate["id"]
    assert first == [
        {
            "Email": "jan@example.com",
            "LastName": "[not provided]",
            "LeadSource": "Partner Referral",
            "Partnerloop_Affiliate_Id__c": affiliate["id"],
            "Partnerloop_Affiliate__c": "Anna de Vries",
            "Partnerloop_First_Order_Date__c": order["ordered_at"][:10],
            "Partnerloop_Order_Count__c": 1,
            "Partnerloop_Lifetime_Value__c": "100.00",
            "Partnerloop_Last_Order_Id__c": "sf-1",
        }
    ]
    # The second order: the same record (same key), now with both orders.
    assert (latest["Partnerloop_Order_Count__c"], latest["Partnerloop_Lifetime_Value__c"]) == (
        2,
        "150.25",
    )
    assert latest["Partnerloop_Last_Order_Id__c"] == "sf-2"
    assert [d["state"] for d in done] == ["delivered", "delivered"]
    assert (connector["direction"], connector["secret"]) == ("out", "")


def test_an_update_answered_204_or_200_is_delivered(server: Server) -> None:
    # Updating an existing record: 204 without a body in older API versions,
    # 200 with created:false in newer ones (NOTES.md section 6).
    updated = Reply(
        200,
        {"content-type": "application/json"},
        b'{"id":"003R00000000001AAA","success":true,"errors":[],"created":false}',
    )
    salesforce = ScriptedServer([Reply(204, {}, b""), updated])
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        clock = Clock()
        for order_id in ("u-1", "u-2"):  # one after the other: two calls
            sale(api, program["id"], order_id, "10.00", "u@example.com")
            worker(server.runtime, clock).drain()
        upserts(salesforce.received, customer_of(server, program["id"], "u-1"))
        done = deliveries(api, connector["id"])

    assert [d["state"] for d in done] == ["delivered", "delivered"]
    assert len(salesforce.received) == 2


def test_an_invalid_field_is_dead_lettered_with_salesforces_message_and_replayable(
    server: Server,
) -> None:
    salesforce = ScriptedServer(
        [fixture(400, "restforce_write-error_400_INVALID_FIELD.json")], then=created()
    )
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        sale(api, program["id"], "v-1", "10.00", "v@example.com")
        worker(server.runtime, Clock()).drain()
        [dead] = api.get(
            "/api/v1/deliveries", params={"connector_id": connector["id"], "state": "dead"}
        ).json()["items"]
        replayed = api.post(f"/api/v1/deliveries/{dead['id']}/replay")
        worker(server.runtime, Clock()).drain()
        after = api.get(f"/api/v1/deliveries/{dead['id']}").json()
        upserts(salesforce.received, customer_of(server, program["id"], "v-1"))

    assert dead["attempts"] == 1  # a retry cannot create the missing column
    assert "No such column 'foo' on sobject of type Bar" in dead["last_error"]
    assert "INVALID_FIELD" in dead["last_error"]
    assert replayed.status_code == 200
    assert after["state"] == "delivered"
    assert len(salesforce.received) == 2


def test_a_duplicate_rule_dead_letters_naming_the_rule_and_the_matches(server: Server) -> None:
    salesforce = ScriptedServer(
        [fixture(400, "captured_DUPLICATES_DETECTED_400.json")], then=created()
    )
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        sale(api, program["id"], "dup-1", "10.00", "dup@example.com")
        worker(server.runtime, Clock()).drain()
        [dead] = deliveries(api, connector["id"])

    assert (dead["state"], dead["attempts"]) == ("dead", 1)
    assert "Standard_Contact_Duplicate_Rule" in dead["last_error"]
    assert "0038M0000016Wv8QAE" in dead["last_error"]
    assert "allow_duplicates" in dead["last_error"]
    assert len(salesforce.received) == 1
    assert "sforce-duplicate-rule-header" not in salesforce.received[0].headers


def test_allow_duplicates_saves_through_the_duplicate_rule(server: Server) -> None:
    salesforce = ScriptedServer(
        [fixture(400, "captured_DUPLICATES_DETECTED_400.json")],
        then=fixture(201, "docs_upsert-new-record_201.json"),
    )
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url, allow_duplicates="true")
        sale(api, program["id"], "dup-2", "10.00", "dup2@example.com")
        worker(server.runtime, Clock()).drain()
        [done] = deliveries(api, connector["id"])
        first, second = upserts(salesforce.received, customer_of(server, program["id"], "dup-2"))

    assert (done["state"], done["attempts"]) == ("delivered", 1)
    assert "sforce-duplicate-rule-header" not in first.headers
    assert second.headers["sforce-duplicate-rule-header"] == "allowSave=true"
    assert second.json() == first.json()


def test_several_records_with_the_same_key_are_dead_lettered(server: Server) -> None:
    salesforce = ScriptedServer(
        [fixture(300, "restforce_upsert-300-multiple-matches.json")], then=created()
    )
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        sale(api, program["id"], "m-1", "10.00", "m@example.com")
        worker(server.runtime, Clock()).drain()
        [dead] = deliveries(api, connector["id"])

    assert (dead["state"], dead["attempts"]) == ("dead", 1)
    assert "/services/data/v23.0/sobjects/Whizbang/foo" in dead["last_error"]
    assert "/services/data/v23.0/sobjects/Whizbang/bar" in dead["last_error"]


def test_an_expired_session_is_refreshed_and_the_new_token_stored(server: Server) -> None:
    salesforce = ScriptedServer(
        [
            errors(401, "INVALID_SESSION_ID", "Session expired or invalid"),
            fixture(200, "restforce_oauth-token-success.json"),
        ],
        then=created(),
    )
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        sale(api, program["id"], "t-1", "10.00", "t@example.com")
        worker(server.runtime, Clock()).drain()
        sale(api, program["id"], "t-2", "10.00", "t@example.com")
        worker(server.runtime, Clock()).drain()
        done = deliveries(api, connector["id"])
        customer = customer_of(server, program["id"], "t-1")
        with server.runtime.sessions() as db:
            row = db.get_one(Connector, connector["id"])
            stored = connectors.config_of(db, server.runtime.cipher, row).credentials

    expired, token, retried, next_delivery = salesforce.received
    upserts([expired], customer)
    assert (token.method, token.path) == ("POST", "/services/oauth2/token")
    assert token.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [CREDENTIALS["refresh_token"]],
        "client_id": [CREDENTIALS["client_id"]],
        "client_secret": [CREDENTIALS["client_secret"]],
    }
    # The retried call (to the configured instance, not the token answer's) and
    # the next delivery carry the new token.
    upserts([retried, next_delivery], customer, token=NEW_TOKEN)
    assert stored == {**CREDENTIALS, "access_token": NEW_TOKEN}
    assert [d["state"] for d in done] == ["delivered", "delivered"]
    # The token endpoint's answer (it holds tokens) is kept out of the attempt log.
    assert all(NEW_TOKEN not in json.dumps(d) for d in done)


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("restforce_oauth-refresh-error_expired.json", "expired access/refresh token"),
        ("restforce_oauth-error_invalid_grant.json", "authentication failure - Invalid Password"),
    ],
)
def test_a_refused_refresh_asks_to_reconnect(server: Server, name: str, description: str) -> None:
    salesforce = ScriptedServer(
        [errors(401, "INVALID_SESSION_ID", "Session expired or invalid"), fixture(400, name)],
        then=created(),
    )
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        sale(api, program["id"], "r-1", "10.00", "r@example.com")
        worker(server.runtime, Clock()).drain()
        [dead] = deliveries(api, connector["id"])
        with server.runtime.sessions() as db:
            row = db.get_one(Connector, connector["id"])
            stored = connectors.config_of(db, server.runtime.cipher, row).credentials

    assert (dead["state"], dead["attempts"]) == ("dead", 1)
    assert dead["last_error"].startswith("reconnect Salesforce: ")
    assert description in dead["last_error"]
    assert len(salesforce.received) == 2  # no upsert after the refused refresh
    assert stored == CREDENTIALS


def upserted(*ids: str) -> Reply:
    """sObject Collections' answer: one UpsertResult per record, in input order."""
    results = [{"id": i, "success": True, "errors": [], "created": True} for i in ids]
    return Reply(200, {"content-type": "application/json"}, json.dumps(results).encode())


def test_the_org_request_limit_pauses_the_connector_for_an_hour(server: Server) -> None:
    limited = errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    # Both customers are due together: one sObject Collections upsert of both.
    salesforce = ScriptedServer([limited], then=upserted("003A", "003B"))
    clock = Clock()
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        sale(api, program["id"], "l-1", "10.00", "l1@example.com")
        sale(api, program["id"], "l-2", "10.00", "l2@example.com")
        running = worker(server.runtime, clock)

        running.drain()
        started = clock.now
        asked_at_first = len(salesforce.received)
        with server.runtime.sessions() as db:
            paused_until = db.get_one(Connector, connector["id"]).paused_until
        clock.now = started + timedelta(minutes=59)
        running.drain()
        asked_within_the_hour = len(salesforce.received)
        clock.now = started + timedelta(hours=1, seconds=5)
        running.drain()
        done = deliveries(api, connector["id"])
        customers = {customer_of(server, program["id"], o) for o in ("l-1", "l-2")}

    # One call (both customers) hit the limit; nothing was sent while paused.
    assert asked_at_first == 1
    assert paused_until == started + timedelta(hours=1)
    assert asked_within_the_hour == 1
    assert [d["state"] for d in done] == ["delivered", "delivered"]
    for request in salesforce.received:
        assert (request.method, request.path) == (
            "PATCH",
            f"{API}/composite/sobjects/Contact/{KEY}",
        )
        assert {r[KEY] for r in request.json()["records"]} == customers
    assert len(salesforce.received) == 2


def test_a_salesforce_that_is_down_gets_the_update_once_it_is_back(server: Server) -> None:
    salesforce = ScriptedServer(
        [Reply(503, {"Retry-After": "30"}), Reply(503), Reply(502)], then=created()
    )
    clock = Clock()
    with salesforce.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], salesforce.url)
        sale(api, program["id"], "d-1", "10.00", "down@example.com")
        running = worker(server.runtime, clock)
        for _ in range(8):
            running.drain()
            clock.advance(3600)
        [done] = deliveries(api, connector["id"])
        upserts(salesforce.received, customer_of(server, program["id"], "d-1"))

    assert (done["state"], done["attempts"]) == ("delivered", 4)
    assert len(salesforce.received) == 4


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"instance_url": "http://acme.my.salesforce.com"}, "settings.instance_url"),
        ({"api_version": "60"}, "settings.api_version"),
        ({"object": "Account"}, "settings.object"),
        ({"external_id_field": "Bad Field"}, "settings.external_id_field"),
        ({"allow_duplicates": "yes"}, "settings.allow_duplicates"),
    ],
)
def test_bad_settings_are_refused(server: Server, settings: dict[str, str], field: str) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "salesforce",
                "settings": {"instance_url": "https://acme.my.salesforce.com", **settings},
                "credentials": CREDENTIALS,
            },
        )
    assert (response.status_code, response.json()["field"]) == (422, field)


def upsert_directly(
    replies: list[Reply], contact: dict[str, Any] | None = None, **settings: str
) -> tuple[Verdict, list[Received]]:
    """The connector alone (no engine), against a scripted Salesforce."""
    salesforce = ScriptedServer(replies)
    with salesforce.running(), httpx.Client(timeout=5) as client:
        verdict = CONNECTOR.upsert_contacts(
            client,
            settings={"instance_url": salesforce.url, **settings},
            credentials=CREDENTIALS,
            contacts=[contact or {KEY: "cus_1", "LastName": "Doe"}],
            now=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        )
    return verdict, salesforce.received


def test_the_concurrency_limit_waits_a_minute_without_pausing() -> None:
    limited = errors(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
    verdict, _ = upsert_directly([limited])
    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, False)
    assert (verdict.outcome.retry_after, verdict.pause_until) == (60.0, None)


def test_a_missing_external_id_field_is_permanent_and_a_lead_can_be_the_object() -> None:
    verdict, [request] = upsert_directly(
        [fixture(404, "restforce_upsert-error_404_NOT_FOUND.json")],
        {"namez": "cus_1", "LastName": "Doe", "Company": "Acme"},
        object="Lead",
        external_id_field="Namez",
    )
    assert request.path == f"{API}/sobjects/Lead/Namez/cus_1"
    # The key field is matched ignoring case (Salesforce API names are) and left out.
    assert request.json() == {"LastName": "Doe", "Company": "Acme"}
    assert verdict.outcome.permanent
    assert "Provided external ID field does not exist" in str(verdict.outcome.error)
