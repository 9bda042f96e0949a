"""Orders as CRM deals (HubSpot and Pipedrive), vendor side: `upsert_deals` called
directly against a local server that checks the requests have the shapes the
vendors document and answers in the vendors' documented shapes; and once through
the delivery engine, after the contact. Fixture payloads
are used where ../shared/fixtures has them; the other bodies are built here, each
with a comment saying where its shape comes from."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from partnerloop.integrations.crm import DealFacts, Verdict
from partnerloop.integrations.hubspot import deals as hubspot_deals
from partnerloop.integrations.pipedrive import deals as pipedrive_deals
from tests.conftest import Server
from tests.factories.connectors import fixture_bytes, fixture_json
from tests.factories.orders import customer_sale
from tests.factories.programs import create_program_api
from tests.support.clock import Clock, worker
from tests.support.http import Received, Reply, ScriptedServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
JSON = {"content-type": "application/json"}
HUBSPOT_TOKEN = "pat-eu1-test-token"
UPSERT = "/crm/v3/objects/deals/batch/upsert"
ASSOCIATE = "/crm/v4/associations/deals/contacts/batch/associate/default"
PIPEDRIVE_TOKEN = "0123456789abcdef0123456789abcdef01234567"
FIELD = "8f4b27fbc8d7b94e5bdc1fd8b3c1ba0d1c44cbf4"  # a deal custom field's 40-char key
SEARCH = "/api/v2/deals/search"
DEALS = "/api/v2/deals"


def answer(status: int, body: Any, **headers: str) -> Reply:
    return Reply(status, {**JSON, **headers}, json.dumps(body).encode())


def facts(
    order_id: str,
    amount_minor: int,
    currency: str,
    *,
    stage: str = "won",
    contact: str | None = None,
    affiliate: str | None = None,
    ordered_at: datetime = datetime(2026, 11, 20, 10, 15, 30, tzinfo=UTC),
) -> DealFacts:
    return DealFacts(
        order_id=order_id,
        name=f"Order #{order_id}",
        amount_minor=amount_minor,
        currency=currency,
        stage=stage,
        ordered_at=ordered_at,
        contact_remote_id=contact,
        affiliate=affiliate,
    )


# --- HubSpot -------------------------------------------------------------------------


def hubspot_upsert(
    replies: list[Reply],
    deals: Sequence[DealFacts],
    **settings: Any,
) -> tuple[Verdict, list[Received]]:
    remote = ScriptedServer(replies)
    with remote.running(), httpx.Client(timeout=5) as client:
        verdict = hubspot_deals.upsert_deals(
            client,
            settings={"api_base_url": remote.url, **settings},
            credentials={"access_token": HUBSPOT_TOKEN},
            deals=deals,
            now=NOW,
        )
    for request in remote.received:
        # Every HubSpot call: a JSON POST with the private app's token.
        assert request.method == "POST"
        assert request.headers["authorization"] == f"Bearer {HUBSPOT_TOKEN}"
        assert request.headers["content-type"] == "application/json"
    return verdict, remote.received


def deal_result(deal_id: str, order_id: str, *, new: bool = True) -> dict[str, Any]:
    # One result of HubSpot's batch upsert answer (the documented response of
    # POST /crm/v3/objects/deals/batch/upsert: id, properties, objectWriteTraceId, new, ...).
    return {
        "id": deal_id,
        "archived": False,
        "createdAt": "2026-11-24T12:00:00.123Z",
        "updatedAt": "2026-11-24T12:00:00.123Z",
        "new": new,
        "objectWriteTraceId": order_id,
        "properties": {
            "hs_object_id": deal_id,
            "partnerloop_order_id": order_id,
            "createdate": "2026-11-24T12:00:00.123Z",
            "hs_lastmodifieddate": "2026-11-24T12:00:00.123Z",
        },
    }


def upserted(*results: dict[str, Any], errors: list[dict[str, Any]] | None = None) -> Reply:
    # The batch answer's envelope as HubSpot documents it; 207 when some inputs failed.
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": list(results),
        "startedAt": "2026-11-24T12:00:00.100Z",
        "completedAt": "2026-11-24T12:00:00.200Z",
    }
    if errors:
        body["errors"] = errors
        body["numErrors"] = len(errors)
    return answer(207 if errors else 200, body)


def associated(*pairs: tuple[str, str]) -> Reply:
    # HubSpot's documented answer to POST /crm/v4/associations/{from}/{to}/batch/associate/default:
    # results of {associationSpec, from, to}; 3 is HubSpot's deal-to-contact default type.
    return answer(
        200,
        {
            "status": "COMPLETE",
            "results": [
                {
                    "associationSpec": {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": 3,
                    },
                    "from": {"id": deal_id},
                    "to": {"id": contact_id},
                }
                for deal_id, contact_id in pairs
            ],
            "startedAt": "2026-11-24T12:00:00.300Z",
            "completedAt": "2026-11-24T12:00:00.400Z",
        },
    )


def test_hubspot_upserts_the_deals_by_order_id_then_associates_their_contacts() -> None:
    deals = [
        facts("1001", 1999, "EUR", stage="won", contact="501", affiliate="Anna de Vries"),
        facts(
            "1002",
            500,
            "JPY",
            stage="open",
            contact="502",
            ordered_at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        ),
    ]
    # HubSpot does not promise results in input order: answered in reverse.
    verdict, received = hubspot_upsert(
        [
            upserted(deal_result("9002", "1002"), deal_result("9001", "1001", new=False)),
            associated(("9001", "501"), ("9002", "502")),
        ],
        deals,
    )

    assert verdict.outcome.ok, verdict.outcome.error
    assert verdict.remote_ids == {"1001": "9001", "1002": "9002"}
    assert verdict.rejected is None
    assert [r.path for r in received] == [UPSERT, ASSOCIATE]
    assert received[0].json() == {
        "inputs": [
            {
                "idProperty": "partnerloop_order_id",
                "id": "1001",
                "objectWriteTraceId": "1001",
                "properties": {
                    "dealname": "Order #1001",
                    "amount": "19.99",
                    "deal_currency_code": "EUR",
                    "closedate": "1795169730000",  # 2026-11-20T10:15:30Z in ms
                    "pipeline": "default",
                    "dealstage": "closedwon",
                    "partnerloop_order_id": "1001",
                    "partnerloop_affiliate": "Anna de Vries",
                },
            },
            {
                "idProperty": "partnerloop_order_id",
                "id": "1002",
                "objectWriteTraceId": "1002",
                "properties": {
                    "dealname": "Order #1002",
                    "amount": "500",  # JPY has no minor unit
                    "deal_currency_code": "JPY",
                    "closedate": "1795248000000",  # 2026-11-21T08:00:00Z in ms
                    "pipeline": "default",
                    "dealstage": "appointmentscheduled",
                    "partnerloop_order_id": "1002",
                    "partnerloop_affiliate": "",
                },
            },
        ]
    }
    # The association uses the deal ids the upsert answered, matched by order.
    assert received[1].json() == {
        "inputs": [
            {"from": {"id": "9001"}, "to": {"id": "501"}},
            {"from": {"id": "9002"}, "to": {"id": "502"}},
        ]
    }


def test_a_hubspot_deal_without_a_contact_makes_no_association_call() -> None:
    verdict, received = hubspot_upsert(
        [upserted(deal_result("9003", "1003"))],
        [facts("1003", 4250, "EUR", stage="lost")],
    )

    assert verdict.outcome.ok
    assert verdict.remote_ids == {"1003": "9003"}
    assert [r.path for r in received] == [UPSERT]
    [deal] = received[0].json()["inputs"]
    assert (deal["properties"]["dealstage"], deal["properties"]["amount"]) == (
        "closedlost",
        "42.50",
    )


def test_hubspot_settings_choose_the_pipeline_and_its_stages() -> None:
    verdict, received = hubspot_upsert(
        [upserted(deal_result("9004", "1004"))],
        [facts("1004", 100, "USD", stage="open")],
        deal_pipeline="webshop",
        deal_stages="open=placed, won=paid, lost=cancelled",
    )

    assert verdict.outcome.ok
    [deal] = received[0].json()["inputs"]
    assert (deal["properties"]["pipeline"], deal["properties"]["dealstage"]) == (
        "webshop",
        "placed",
    )


def test_another_hubspot_pipeline_without_its_stage_ids_is_refused_before_any_call() -> None:
    verdict, received = hubspot_upsert(
        [], [facts("1005", 100, "USD")], deal_pipeline="webshop", deal_stages="won=paid"
    )

    assert received == []
    assert verdict.outcome.permanent
    assert "settings.deal_stages" in str(verdict.outcome.error)
    assert "open, lost" in str(verdict.outcome.error)


def test_hubspot_secondly_limit_waits() -> None:
    # HubSpot's 429 body (../shared/fixtures/hubspot/429_daily_docs-example.json) with
    # the SECONDLY policy NOTES.md section 5 documents next to DAILY.
    secondly = {
        **fixture_json("hubspot", "429_daily_docs-example.json"),
        "message": "You have reached your secondly limit.",
        "policyName": "SECONDLY",
    }
    verdict, received = hubspot_upsert(
        [answer(429, secondly, **{"Retry-After": "3"})],
        [facts("1006", 100, "EUR", contact="506")],
    )

    assert len(received) == 1  # no association without the upsert
    assert not verdict.outcome.ok
    assert not verdict.outcome.permanent
    assert verdict.outcome.retry_after == 3.0
    assert verdict.pause_until is None
    assert "secondly limit" in str(verdict.outcome.error)


def test_hubspot_daily_limit_pauses_until_the_accounts_midnight() -> None:
    daily = Reply(
        429, JSON, json.dumps(fixture_json("hubspot", "429_daily_docs-example.json")).encode()
    )
    verdict, _ = hubspot_upsert([daily], [facts("1007", 100, "EUR")], timezone="Europe/Amsterdam")

    assert not verdict.outcome.ok
    assert verdict.pause_until == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)


def test_a_hubspot_400_is_permanent_with_hubspots_message() -> None:
    # The 400 body of HubSpot's changelog on deal currency validation (2023-07-31).
    refused = {
        "status": "error",
        "message": 'Property values were not valid: [{"isValid":false,"message":"\\"BRL\\" is '
        'not a part of the current effective currency codes for portal 104008696",'
        '"error":"INVALID_OPTION","name":"deal_currency_code"}]',
        "correlationId": "99a6fa94-58a7-4a8e-8bbb-60a59dbde414",
        "category": "VALIDATION_ERROR",
    }
    verdict, received = hubspot_upsert(
        [answer(400, refused)], [facts("1008", 12000, "BRL", contact="508")]
    )

    assert len(received) == 1
    assert verdict.outcome.permanent
    assert verdict.outcome.status_code == 400
    assert "is not a part of the current effective currency codes" in str(verdict.outcome.error)
    assert verdict.rejected == {"1008": verdict.outcome.error}


def test_a_hubspot_207_refuses_the_named_deal_and_the_others_go_on() -> None:
    # A multi-status error as HubSpot's error-handling page describes it: the failed
    # input named by its objectWriteTraceId in the error's context.
    error = {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": "Property values were not valid: amount",
        "context": {"objectWriteTraceId": ["1010"]},
    }
    verdict, received = hubspot_upsert(
        [upserted(deal_result("9009", "1009"), errors=[error]), associated(("9009", "509"))],
        [facts("1009", 100, "EUR", contact="509"), facts("1010", 100, "EUR", contact="510")],
    )

    assert verdict.outcome.ok
    assert verdict.remote_ids == {"1009": "9009"}
    assert verdict.rejected == {"1010": "Property values were not valid: amount"}
    assert received[1].json() == {"inputs": [{"from": {"id": "9009"}, "to": {"id": "509"}}]}


def test_a_refused_association_dead_letters_the_recorded_deal_with_a_clear_message() -> None:
    # HubSpot's standard error body (status, message, correlationId, category).
    gone = {
        "status": "error",
        "message": "No contact with ID 511 exists",
        "correlationId": "3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd",
        "category": "OBJECT_NOT_FOUND",
    }
    verdict, _ = hubspot_upsert(
        [upserted(deal_result("9011", "1011")), answer(404, gone)],
        [facts("1011", 100, "EUR", contact="511")],
    )

    assert verdict.outcome.permanent
    assert verdict.outcome.status_code == 404  # the association's answer, for the attempt log
    assert verdict.remote_ids == {"1011": "9011"}  # the deal itself is there
    message = "deal 9011 of order 1011 was recorded, but HubSpot would not associate it"
    assert message in str(verdict.outcome.error)
    assert "No contact with ID 511 exists" in str(verdict.rejected and verdict.rejected["1011"])


def test_an_association_hubspot_cannot_take_now_retries_the_whole_delivery() -> None:
    down = Reply(503, {"content-type": "text/html"}, b"<html>Service Unavailable</html>")
    verdict, _ = hubspot_upsert(
        [upserted(deal_result("9012", "1012")), down],
        [facts("1012", 100, "EUR", contact="512")],
    )

    assert not verdict.outcome.ok
    assert not verdict.outcome.permanent
    assert verdict.outcome.status_code == 503


@pytest.mark.parametrize("module", [hubspot_deals, pipedrive_deals])
def test_an_unknown_stage_is_a_permanent_failure_naming_the_bug(module: Any) -> None:
    remote = ScriptedServer([])
    with remote.running(), httpx.Client(timeout=5) as client:
        verdict = module.upsert_deals(
            client,
            settings={"api_base_url": remote.url, "order_id_field": FIELD},
            credentials={"access_token": "token"},
            deals=[facts("1013", 100, "EUR", stage="refunded")],
            now=NOW,
        )

    assert remote.received == []
    assert verdict.outcome.permanent
    assert "'refunded', not open, won or lost" in str(verdict.outcome.error)
    assert "a bug in partnerloop" in str(verdict.outcome.error)


# --- Pipedrive -----------------------------------------------------------------------


def pipedrive_upsert(
    replies: list[Reply], deals: Sequence[DealFacts], **settings: Any
) -> tuple[Verdict, list[Received]]:
    remote = ScriptedServer(replies)
    with remote.running(), httpx.Client(timeout=5) as client:
        verdict = pipedrive_deals.upsert_deals(
            client,
            settings={"api_base_url": remote.url, "order_id_field": FIELD, **settings},
            credentials={"api_token": PIPEDRIVE_TOKEN},
            deals=deals,
            now=NOW,
        )
    for request in remote.received:
        assert request.headers["x-api-token"] == PIPEDRIVE_TOKEN
    return verdict, remote.received


def call(request: Received) -> tuple[str, str, dict[str, list[str]]]:
    parts = urlsplit(request.path)
    return request.method, parts.path, parse_qs(parts.query)


def exact(request: Received) -> Any:
    """The body with numbers as Decimals: what was written, digit for digit."""
    assert request.headers["content-type"] == "application/json"
    return json.loads(request.body, parse_float=Decimal)


def search_answer(*items: dict[str, Any]) -> Reply:
    # GET /api/v2/deals/search's documented answer (pipedrive/client-nodejs v2 model
    # GetDealSearchResponse): data.items of {result_score, item}; an item lists the
    # matching custom field values, not their keys.
    return answer(
        200,
        {
            "success": True,
            "data": {"items": [{"result_score": 1.0, "item": item} for item in items]},
            "additional_data": {"next_cursor": None},
        },
    )


def search_item(deal_id: int, value: str) -> dict[str, Any]:
    return {
        "id": deal_id,
        "type": "deal",
        "title": f"Deal {deal_id}",
        "value": 100,
        "currency": "EUR",
        "status": "open",
        "visible_to": 3,
        "owner": {"id": 26510409},
        "stage": {"id": 1, "name": "Qualified"},
        "person": None,
        "organization": None,
        "custom_fields": [value],
        "notes": [],
        "is_archived": False,
    }


def deal(deal_id: int, custom_fields: dict[str, Any], **changes: Any) -> dict[str, Any]:
    # A real Pipedrive v2 deal object (the `data` of the captured deal webhook,
    # ../shared/fixtures/pipedrive/captured_webhook-v2_create.deal_body.json).
    data = dict(fixture_json("pipedrive", "captured_webhook-v2_create.deal_body.json")["data"])
    return {**data, "id": deal_id, "custom_fields": custom_fields, **changes}


def deals_answer(*deals: dict[str, Any]) -> Reply:
    # GET /api/v2/deals: {"success": true, "data": [deals], "additional_data": {next_cursor}}.
    return answer(
        200, {"success": True, "data": list(deals), "additional_data": {"next_cursor": None}}
    )


def test_pipedrive_creates_the_deal_when_the_search_finds_none() -> None:
    created = deal(178, {FIELD: "1001"}, title="Order #1001", value=19.99, currency="EUR")
    verdict, received = pipedrive_upsert(
        [search_answer(), answer(201, {"success": True, "data": created})],
        [facts("1001", 1999, "EUR", stage="won", contact="179")],
    )

    assert verdict.outcome.ok, verdict.outcome.error
    assert verdict.remote_ids == {"1001": "178"}
    assert [call(r)[:2] for r in received] == [("GET", SEARCH), ("POST", DEALS)]
    assert call(received[0])[2] == {
        "term": ["1001"],
        "fields": ["custom_fields"],
        "exact_match": ["true"],
    }
    assert exact(received[1]) == {
        "title": "Order #1001",
        "value": Decimal("19.99"),  # a JSON number, written exactly
        "currency": "EUR",
        "status": "won",
        "person_id": 179,
        "custom_fields": {FIELD: "1001"},
    }
    assert b'"value":19.99,' in received[1].body


def test_pipedrive_updates_the_deal_the_search_finds() -> None:
    ours = deal(42, {FIELD: "1002"})
    verdict, received = pipedrive_upsert(
        [
            search_answer(search_item(42, "1002")),
            deals_answer(ours),
            answer(200, {"success": True, "data": {**ours, "status": "open", "value": 500}}),
        ],
        [facts("1002", 500, "JPY", stage="open")],
    )

    assert verdict.outcome.ok, verdict.outcome.error
    assert verdict.remote_ids == {"1002": "42"}
    assert [call(r)[:2] for r in received] == [
        ("GET", SEARCH),
        ("GET", DEALS),
        ("PATCH", f"{DEALS}/42"),
    ]
    # The candidates are checked with only the order id field.
    assert call(received[1])[2] == {"ids": ["42"], "custom_fields": [FIELD]}
    assert exact(received[2]) == {
        "title": "Order #1002",
        "value": 500,
        "currency": "JPY",
        "status": "open",
        "custom_fields": {FIELD: "1002"},
    }  # no person_id: the deal's person is left as it is


def test_a_deal_where_another_field_holds_the_order_id_is_not_overwritten() -> None:
    other = deal(7, {FIELD: "55"})  # found by another field holding "1003"
    created = deal(180, {FIELD: "1003"})
    verdict, received = pipedrive_upsert(
        [
            search_answer(search_item(7, "1003")),
            deals_answer(other),
            answer(201, {"success": True, "data": created}),
        ],
        [facts("1003", 100, "EUR")],
    )

    assert verdict.remote_ids == {"1003": "180"}
    assert [call(r)[:2] for r in received] == [
        ("GET", SEARCH),
        ("GET", DEALS),
        ("POST", DEALS),
    ]


def test_pipedrive_deals_without_order_id_field_are_refused_clearly() -> None:
    remote = ScriptedServer([])
    with remote.running(), httpx.Client(timeout=5) as client:
        verdict = pipedrive_deals.upsert_deals(
            client,
            settings={"api_base_url": remote.url},
            credentials={"api_token": PIPEDRIVE_TOKEN},
            deals=[facts("1004", 100, "EUR")],
            now=NOW,
        )

    assert remote.received == []
    assert verdict.outcome.permanent
    assert "settings.order_id_field" in str(verdict.outcome.error)
    assert "custom field" in str(verdict.outcome.error)


def test_pipedrive_rate_limit_is_retried_after_retry_after() -> None:
    # Pipedrive's 429 body and headers, as the person tests (test_pipedrive.py) use them.
    limited = answer(
        429,
        {"success": False, "error": "Too many requests", "errorCode": 429},
        **{"Retry-After": "7", "x-ratelimit-reset": "30"},
    )
    verdict, received = pipedrive_upsert([limited], [facts("1005", 100, "EUR")])

    assert len(received) == 1
    assert not verdict.outcome.ok
    assert not verdict.outcome.permanent
    assert verdict.outcome.retry_after == 7.0
    assert verdict.pause_until == datetime(2026, 11, 24, 12, 0, 7, tzinfo=UTC)


def test_a_deal_gone_between_search_and_update_is_retried() -> None:
    # Pipedrive's error body shape (success false, error, error_info).
    gone = {"success": False, "error": "Deal not found", "error_info": "", "data": None}
    verdict, _ = pipedrive_upsert(
        [
            search_answer(search_item(43, "1006")),
            deals_answer(deal(43, {FIELD: "1006"})),
            answer(404, gone),
        ],
        [facts("1006", 100, "EUR")],
    )

    assert not verdict.outcome.ok
    assert not verdict.outcome.permanent
    assert "deleted or merged since the search" in str(verdict.outcome.error)


def test_a_pipedrive_400_refuses_that_deal_and_the_others_go_on() -> None:
    refused = {
        "success": False,
        "error": "Bad request",
        "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
        "data": None,
        "additional_data": None,
    }
    created = deal(181, {FIELD: "1008"})
    verdict, _ = pipedrive_upsert(
        [
            search_answer(),
            answer(400, refused),
            search_answer(),
            answer(201, {"success": True, "data": created}),
        ],
        [facts("1007", 100, "EUR"), facts("1008", 100, "EUR")],
    )

    assert verdict.outcome.ok
    assert verdict.remote_ids == {"1008": "181"}
    assert verdict.rejected is not None
    assert "Bad request" in verdict.rejected["1007"]


# --- through the delivery engine ---------------------------------------------------------


def test_with_deals_on_a_sale_becomes_a_contact_then_a_deal_associated_to_it(
    server: Server,
) -> None:
    # HubSpot's batch answer for the contact (its id, 512, is what the deal is associated to).
    contact = json.loads(
        fixture_bytes("hubspot", "docs_contacts-batch-update_response-example.json")
    )
    contact.update(status="COMPLETE", errors=[], numErrors=0)
    contact["results"][0]["properties"] = {"email": "deal@example.com"}
    remote = ScriptedServer(
        [
            answer(200, contact),
            upserted(deal_result("9001", "deal-1")),
            associated(("9001", "512")),
        ]
    )
    with remote.running(), server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "hubspot",
                "settings": {"api_base_url": remote.url, "deals": "on"},
                "credentials": {"access_token": HUBSPOT_TOKEN},
            },
        )
        assert response.status_code == 201, response.text
        customer_sale(api, program["id"], "deal-1", "19.99", "deal@example.com")
        worker(server.runtime, Clock()).drain()
        [delivery] = api.get(
            "/api/v1/deliveries", params={"connector_id": response.json()["id"]}
        ).json()["items"]

    paths = [r.path for r in remote.received]
    assert paths == ["/crm/v3/objects/contacts/batch/upsert", UPSERT, ASSOCIATE]
    [deal] = remote.received[1].json()["inputs"]
    assert (deal["idProperty"], deal["id"]) == ("partnerloop_order_id", "deal-1")
    assert deal["properties"]["amount"] == "19.99"
    assert deal["properties"]["dealstage"] == "closedwon"
    assert deal["properties"]["deal_currency_code"] == "EUR"
    assert remote.received[2].json() == {"inputs": [{"from": {"id": "9001"}, "to": {"id": "512"}}]}
    assert delivery["state"] == "delivered"


def test_deals_must_be_on_or_off(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "hubspot",
                "settings": {"deals": "yes"},
                "credentials": {"access_token": HUBSPOT_TOKEN},
            },
        )

    assert response.status_code == 422
    assert response.json()["field"] == "settings.deals"
