"""The three CRM connectors called directly (no engine) with batches of contacts,
HubSpot's OAuth refresh and the reads behind conflict policies, against a local
server that checks each request has the shape the vendor documents and answers
with the vendor's published bodies (../shared/fixtures) where they exist."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from partnerloop.integrations.crm import ContactsRead, CrmRecord, Verdict
from partnerloop.integrations.hubspot.connector import CONNECTOR as HUBSPOT
from partnerloop.integrations.pipedrive.connector import CONNECTOR as PIPEDRIVE
from partnerloop.integrations.salesforce.connector import CONNECTOR as SALESFORCE
from partnerloop.integrations.salesforce.connector import soql_quote
from partnerloop.sync.worker import Outcome
from tests.conftest import Server
from tests.factories.connectors import fixture_bytes, fixture_json
from tests.factories.programs import create_program_api
from tests.support.http import Received, Reply, ScriptedServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
JSON = {"content-type": "application/json"}


def reply(status: int, body: Any, **headers: str) -> Reply:
    return Reply(status, {**JSON, **headers}, json.dumps(body).encode())


# ------------------------------------------------------------------ HubSpot

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
READ = "/crm/v3/objects/contacts/batch/read"
TOKEN_PATH = "/oauth/v1/token"
PAT = "pat-eu1-test-token"
OAUTH = {
    "refresh_token": "hs-refresh-1",
    "client_id": "hs-client-id",
    "client_secret": "hs-client-secret",
}
BATCH_EXAMPLE = "docs_contacts-batch-update_response-example.json"


def batch_answer(
    status: int, ids: dict[str, str], errors: Sequence[tuple[dict[str, Any], str]] = ()
) -> Reply:
    """HubSpot's documented batch answer (the fixture), with these results
    {email: id} and errors (context, message) in place of the example's."""
    body = fixture_json("hubspot", BATCH_EXAMPLE)
    result = body["results"][0]
    error = body["errors"][0]
    body["status"] = "COMPLETE"
    body["results"] = [
        {**copy.deepcopy(result), "id": i, "properties": {**result["properties"], "email": e}}
        for e, i in ids.items()
    ]
    body["errors"] = [
        {
            **copy.deepcopy(error),
            "status": "error",
            "category": "VALIDATION_ERROR",
            "context": context,
            "message": message,
        }
        for context, message in errors
    ]
    body["numErrors"] = len(errors)
    return reply(status, body)


def hubspot_upsert(
    replies: list[Reply],
    contacts: Sequence[dict[str, Any]],
    credentials: dict[str, str] | None = None,
) -> tuple[Verdict, list[Received]]:
    hubspot = ScriptedServer(replies)
    with hubspot.running(), httpx.Client(timeout=5) as client:
        verdict = HUBSPOT.upsert_contacts(
            client,
            settings={"api_base_url": hubspot.url},
            credentials=credentials or {"access_token": PAT},
            contacts=contacts,
            now=NOW,
        )
    return verdict, hubspot.received


def inputs(request: Received, token: str = PAT) -> list[dict[str, Any]]:
    """The inputs of a batch upsert, after checking the documented request shape."""
    assert (request.method, request.path) == ("POST", UPSERT)
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert set(body) == {"inputs"}
    for item in body["inputs"]:
        assert set(item) == {"id", "idProperty", "objectWriteTraceId", "properties"}
        assert item["idProperty"] == "email"
        assert item["id"] == item["properties"]["email"]
        # The trace id a 207's errors name the input by: the key, as compared.
        assert item.pop("objectWriteTraceId") == item["id"].lower()
        assert all(isinstance(v, str) for v in item["properties"].values())
    return list(body["inputs"])


def contact(email: str, **properties: Any) -> dict[str, Any]:
    return {"email": email, **properties}


def test_a_hubspot_error_naming_the_trace_id_refuses_that_contact_alone() -> None:
    message = 'Property values were not valid: [{"isValid":false,"name":"phone"}]'
    answer = batch_answer(
        207, {"a@example.com": "101"}, [({"objectWriteTraceId": ["b@example.com"]}, message)]
    )
    verdict, _ = hubspot_upsert(
        [answer], [contact("a@example.com"), contact("B@example.com", phone="x")]
    )

    assert verdict.outcome.ok
    assert verdict.rejected == {"b@example.com": message}
    assert verdict.remote_ids == {"a@example.com": "101"}


def test_a_hubspot_batch_with_one_refused_contact_delivers_the_others() -> None:
    message = (
        'Property values were not valid: [{"isValid":false,"message":"Email address '
        'b@example is invalid","error":"INVALID_EMAIL","name":"email"}]'
    )
    answer = batch_answer(
        207,
        {"a@example.com": "101", "c@example.com": "103"},
        [({"ids": ["b@example"]}, message)],
    )
    verdict, [request] = hubspot_upsert(
        [answer],
        [
            contact("a@example.com", partnerloop_order_count=1),
            contact("b@example", partnerloop_order_count=2),
            contact("c@example.com", partnerloop_order_count=3, hs_tags=None),
        ],
    )

    assert inputs(request) == [
        {"id": "a@example.com", "idProperty": "email",
         "properties": {"email": "a@example.com", "partnerloop_order_count": "1"}},
        {"id": "b@example", "idProperty": "email",
         "properties": {"email": "b@example", "partnerloop_order_count": "2"}},
        {"id": "c@example.com", "idProperty": "email",
         "properties": {"email": "c@example.com", "partnerloop_order_count": "3"}},
    ]  # fmt: skip
    assert (verdict.outcome.ok, verdict.outcome.status_code) == (True, 207)
    assert verdict.rejected == {"b@example": message}
    assert verdict.remote_ids == {"a@example.com": "101", "c@example.com": "103"}
    assert (verdict.pause_until, verdict.credentials) == (None, None)


def test_a_hubspot_error_that_names_no_input_retries_the_whole_call() -> None:
    # HubSpot's own example answer: its error's context is empty.
    example = Reply(207, JSON, fixture_bytes("hubspot", BATCH_EXAMPLE))
    verdict, [request] = hubspot_upsert(
        [example], [contact("a@example.com"), contact("b@example.com")]
    )

    assert len(inputs(request)) == 2
    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, False)
    assert verdict.outcome.error == (
        "HubSpot refused part of the batch without naming the contact (<string>); "
        "the whole batch is retried"
    )
    assert (verdict.rejected, verdict.remote_ids) == (None, None)


def test_a_hubspot_batch_refused_contact_by_contact_is_a_permanent_failure() -> None:
    answer = batch_answer(
        207,
        {},
        [({"ids": ["a@example.com"]}, "bad a"), ({"emails": ["B@Example.com"]}, "bad b")],
    )
    verdict, _ = hubspot_upsert([answer], [contact("a@example.com"), contact("b@example.com")])

    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, True)
    assert verdict.outcome.error == "HubSpot refused every contact: bad a"
    assert verdict.rejected == {"a@example.com": "bad a", "b@example.com": "bad b"}


def test_150_contacts_go_to_hubspot_in_two_calls_of_100_and_50() -> None:
    emails = [f"c{n:03}@example.com" for n in range(150)]
    ids = {e: str(1000 + n) for n, e in enumerate(emails)}
    verdict, [first, second] = hubspot_upsert(
        [batch_answer(200, dict(list(ids.items())[:100])),
         batch_answer(200, dict(list(ids.items())[100:]))],
        [contact(e) for e in emails],
    )  # fmt: skip

    assert [i["id"] for i in inputs(first)] == emails[:100]
    assert [i["id"] for i in inputs(second)] == emails[100:]
    assert (verdict.outcome.ok, verdict.outcome.status_code) == (True, 200)
    assert verdict.remote_ids == ids
    assert verdict.rejected is None


def test_a_call_of_a_split_batch_refused_for_good_rejects_only_its_contacts() -> None:
    emails = [f"c{n:03}@example.com" for n in range(150)]
    refused = reply(400, {"status": "error", "message": "Property values were not valid",
                          "category": "VALIDATION_ERROR"})  # fmt: skip
    verdict, calls = hubspot_upsert(
        [batch_answer(200, {e: str(n) for n, e in enumerate(emails[:100])}), refused],
        [contact(e) for e in emails],
    )

    assert len(calls) == 2
    assert verdict.outcome.ok
    assert verdict.rejected == dict.fromkeys(
        emails[100:], "HubSpot answered 400: Property values were not valid"
    )
    assert verdict.remote_ids is not None
    assert len(verdict.remote_ids) == 100


def test_a_retryable_failure_ends_a_split_batch() -> None:
    daily = Reply(429, JSON, fixture_bytes("hubspot", "429_daily_docs-example.json"))
    emails = [f"c{n:03}@example.com" for n in range(150)]
    verdict, calls = hubspot_upsert([daily], [contact(e) for e in emails])

    assert len(calls) == 1  # the second call is not made
    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, False)
    assert verdict.pause_until == datetime(2026, 11, 25, tzinfo=UTC)


def test_the_same_email_twice_in_a_batch_is_sent_once_the_last_one_winning() -> None:
    verdict, [request] = hubspot_upsert(
        [batch_answer(200, {"jan@example.com": "7", "piet@example.com": "8"})],
        [
            contact("jan@example.com", partnerloop_order_count=1),
            contact("piet@example.com", partnerloop_order_count=5),
            contact("Jan@Example.com", partnerloop_order_count=2),
        ],
    )

    assert inputs(request) == [
        {"id": "piet@example.com", "idProperty": "email",
         "properties": {"email": "piet@example.com", "partnerloop_order_count": "5"}},
        {"id": "Jan@Example.com", "idProperty": "email",
         "properties": {"email": "Jan@Example.com", "partnerloop_order_count": "2"}},
    ]  # fmt: skip
    assert verdict.remote_ids == {"jan@example.com": "7", "piet@example.com": "8"}


def token_answer(access_token: str) -> Reply:
    # HubSpot's OAuth v1 token answer (its refresh-token docs): snake_case keys.
    return reply(
        200,
        {"token_type": "bearer", "refresh_token": "hs-refresh-2",
         "access_token": access_token, "expires_in": 1800},
    )  # fmt: skip


def token_request(request: Received) -> dict[str, list[str]]:
    assert (request.method, request.path) == ("POST", TOKEN_PATH)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return parse_qs(request.body.decode())


REFRESH_FORM = {
    "grant_type": ["refresh_token"],
    "client_id": ["hs-client-id"],
    "client_secret": ["hs-client-secret"],
    "refresh_token": ["hs-refresh-1"],
}


def test_an_oauth_token_about_to_expire_is_renewed_before_the_call() -> None:
    credentials = {
        **OAUTH,
        "access_token": "old-token",
        "expires_at": (NOW + timedelta(seconds=30)).isoformat(),
    }
    verdict, [renewal, upsert] = hubspot_upsert(
        [token_answer("new-token"), batch_answer(200, {"o@example.com": "9"})],
        [contact("o@example.com")],
        credentials,
    )

    assert token_request(renewal) == REFRESH_FORM
    assert len(inputs(upsert, token="new-token")) == 1
    assert verdict.outcome.ok
    assert verdict.credentials == {
        **OAUTH,
        "refresh_token": "hs-refresh-2",
        "access_token": "new-token",
        "expires_at": "2026-11-24T12:30:00+00:00",
    }
    assert verdict.remote_ids == {"o@example.com": "9"}


def test_an_oauth_app_without_an_access_token_gets_one_first() -> None:
    verdict, [renewal, upsert] = hubspot_upsert(
        [token_answer("first-token"), batch_answer(200, {"o@example.com": "9"})],
        [contact("o@example.com")],
        dict(OAUTH),
    )

    assert token_request(renewal) == REFRESH_FORM
    inputs(upsert, token="first-token")
    assert verdict.credentials is not None
    assert verdict.credentials["access_token"] == "first-token"


def test_a_valid_oauth_token_is_used_as_it_is() -> None:
    credentials = {
        **OAUTH,
        "access_token": "live-token",
        "expires_at": (NOW + timedelta(seconds=61)).isoformat(),
    }
    verdict, [upsert] = hubspot_upsert(
        [batch_answer(200, {"o@example.com": "9"})], [contact("o@example.com")], credentials
    )

    inputs(upsert, token="live-token")
    assert (verdict.outcome.ok, verdict.credentials) == (True, None)


def test_a_401_renews_the_oauth_token_once_and_repeats_the_call() -> None:
    credentials = {
        **OAUTH,
        "access_token": "revoked-token",
        "expires_at": (NOW + timedelta(hours=1)).isoformat(),
    }
    expired = reply(
        401,
        {"status": "error", "message": "The OAuth token used to make this call expired "
         "7 second(s) ago.", "category": "EXPIRED_AUTHENTICATION"},
    )  # fmt: skip
    verdict, [refused, renewal, repeated] = hubspot_upsert(
        [expired, token_answer("new-token"), batch_answer(200, {"o@example.com": "9"})],
        [contact("o@example.com")],
        credentials,
    )

    assert inputs(refused, token="revoked-token") == inputs(repeated, token="new-token")
    assert token_request(renewal) == REFRESH_FORM
    assert verdict.outcome.ok
    assert verdict.credentials == {
        **OAUTH,
        "refresh_token": "hs-refresh-2",
        "access_token": "new-token",
        "expires_at": "2026-11-24T12:30:00+00:00",
    }


def test_a_second_401_after_renewal_is_retried_with_the_new_token_stored() -> None:
    credentials = {**OAUTH, "access_token": "t0"}
    unauthorized = reply(401, {"status": "error", "message": "Authentication credentials "
                               "not found.", "category": "INVALID_AUTHENTICATION"})  # fmt: skip
    verdict, calls = hubspot_upsert(
        [unauthorized, token_answer("t1"), unauthorized], [contact("o@example.com")], credentials
    )

    assert [c.path for c in calls] == [UPSERT, TOKEN_PATH, UPSERT]  # renewed once only
    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, False)
    assert verdict.credentials is not None
    assert verdict.credentials["access_token"] == "t1"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token",
             "correlationId": "3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd"},
            "reconnect HubSpot: missing or invalid refresh token (BAD_REFRESH_TOKEN)",
        ),
        (
            {"error": "invalid_grant", "error_description": "refresh token is revoked"},
            "reconnect HubSpot: refresh token is revoked (invalid_grant)",
        ),
    ],
)  # fmt: skip
def test_a_refused_renewal_asks_to_reconnect_hubspot(body: dict[str, str], error: str) -> None:
    verdict, [renewal] = hubspot_upsert([reply(400, body)], [contact("o@example.com")], dict(OAUTH))

    assert token_request(renewal) == REFRESH_FORM
    assert verdict.outcome == Outcome(ok=False, error=error, permanent=True, status_code=400)
    assert verdict.credentials is None


def test_a_private_apps_401_is_retried_without_any_renewal() -> None:
    unauthorized = reply(401, {"status": "error", "message": "Authentication credentials "
                               "not found.", "category": "INVALID_AUTHENTICATION"})  # fmt: skip
    verdict, [request] = hubspot_upsert([unauthorized], [contact("o@example.com")])

    inputs(request)
    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, False)
    assert verdict.outcome.error == ("HubSpot answered 401: Authentication credentials not found.")


def test_a_hubspot_read_renews_the_token_and_reads_in_calls_of_100() -> None:
    emails = [f"r{n:03}@example.com" for n in range(101)]
    hubspot = ScriptedServer(
        [
            token_answer("read-token"),
            batch_answer(200, {emails[0]: "1"}),
            batch_answer(207, {}, [({"ids": [emails[100]]}, "Could not get some CONTACT objects")]),
        ]
    )
    with hubspot.running(), httpx.Client(timeout=5) as client:
        records = HUBSPOT.read_contacts(
            client,
            settings={"api_base_url": hubspot.url},
            credentials=dict(OAUTH),
            keys=emails,
            properties=["partnerloop_order_count"],
            now=NOW,
        )

    renewal, first, second = hubspot.received
    assert token_request(renewal) == REFRESH_FORM
    assert (first.path, second.path) == (READ, READ)
    assert first.headers["authorization"] == "Bearer read-token"
    assert first.json()["properties"] == ["email", "partnerloop_order_count"]
    assert [i["id"] for i in first.json()["inputs"]] == emails[:100]
    assert second.json()["inputs"] == [{"id": emails[100]}]
    assert isinstance(records, ContactsRead)
    assert records.credentials is not None
    assert records.credentials["access_token"] == "read-token"  # handed back to be stored
    assert list(records.records) == [emails[0]]
    assert records.records[emails[0]].updated_at == datetime(
        2019, 12, 7, 16, 50, 6, 678000, tzinfo=UTC
    )


def connect_hubspot(api: httpx.Client, credentials: dict[str, str]) -> httpx.Response:
    program = create_program_api(api)
    return api.post(
        "/api/v1/connectors",
        json={
            "program_id": program["id"],
            "kind": "hubspot",
            "settings": {"api_base_url": "https://api.hubapi.com"},
            "credentials": credentials,
        },
    )


@pytest.mark.parametrize(
    "credentials",
    [
        {"access_token": PAT},
        dict(OAUTH),
        {**OAUTH, "access_token": "t", "expires_at": "2026-11-24T12:30:00+00:00"},
    ],
)
def test_either_hubspot_credential_form_is_accepted(
    server: Server, credentials: dict[str, str]
) -> None:
    with server.client() as api:
        response = connect_hubspot(api, credentials)
    assert response.status_code == 201, response.text
    assert response.json()["has_credentials"] is True


@pytest.mark.parametrize(
    ("credentials", "field", "code"),
    [
        ({}, "credentials", "missing_credential"),
        ({"refresh_token": "r", "client_id": "c"}, "credentials.client_secret",
         "missing_credential"),
        ({"access_token": PAT, "client_id": "c"}, "credentials.refresh_token",
         "missing_credential"),
        ({"access_token": PAT, "expires_at": "2026-11-24T12:30:00Z"}, "credentials.expires_at",
         "invalid_credential"),
        ({**OAUTH, "expires_at": "tomorrow"}, "credentials.expires_at", "invalid_credential"),
        ({"api_key": "k"}, "credentials.api_key", "unknown_credential"),
    ],
)  # fmt: skip
def test_other_hubspot_credentials_are_refused(
    server: Server, credentials: dict[str, str], field: str, code: str
) -> None:
    with server.client() as api:
        response = connect_hubspot(api, credentials)
    assert response.status_code == 422, response.text
    assert (response.json()["field"], response.json()["code"]) == (field, code)


# ------------------------------------------------------------------ Salesforce

API = "/services/data/v60.0"
KEY = "Partnerloop_Customer_Id__c"
SF_TOKEN = "00Dx0000000BV7z!old-access-token"
SF_CREDENTIALS = {
    "access_token": SF_TOKEN,
    "refresh_token": "5Aep861refresh",
    "client_id": "3MVG9client",
    "client_secret": "client-secret-1",
}
COLLECTION = f"{API}/composite/sobjects/Contact/{KEY}"


def sf_fixture(status: int, name: str) -> Reply:
    return Reply(
        status,
        {"content-type": "application/json;charset=UTF-8"},
        fixture_bytes("salesforce", name),
    )


def salesforce_call(
    replies: list[Reply],
    contacts: Sequence[dict[str, Any]],
    **settings: str,
) -> tuple[Verdict, list[Received]]:
    salesforce = ScriptedServer(replies)
    with salesforce.running(), httpx.Client(timeout=5) as client:
        verdict = SALESFORCE.upsert_contacts(
            client,
            settings={"instance_url": salesforce.url, **settings},
            credentials=SF_CREDENTIALS,
            contacts=contacts,
            now=NOW,
        )
    return verdict, salesforce.received


def records(request: Received, token: str = SF_TOKEN) -> list[dict[str, Any]]:
    """The records of a collection upsert, after checking the documented shape."""
    assert (request.method, request.path) == ("PATCH", COLLECTION)
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert set(body) == {"allOrNone", "records"}
    assert body["allOrNone"] is False
    assert all(r["attributes"] == {"type": "Contact"} for r in body["records"])
    return [{k: v for k, v in r.items() if k != "attributes"} for r in body["records"]]


def sf_contact(customer_id: str, **fields: Any) -> dict[str, Any]:
    return {KEY: customer_id, "LastName": "Doe", **fields}


def upsert_results(*results: dict[str, Any]) -> Reply:
    return reply(200, list(results))


def ok(record_id: str, created: bool = True) -> dict[str, Any]:
    return {"id": record_id, "success": True, "errors": [], "created": created}


def failed(code: str, message: str, fields: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": list(fields)}],
    }


# The messages of the captured and published error bodies.
DUPLICATE = fixture_json("salesforce", "captured_DUPLICATES_DETECTED_400.json")[0]["message"]
NO_COLUMN = fixture_json("salesforce", "restforce_write-error_400_INVALID_FIELD.json")[0]["message"]


def test_a_salesforce_batch_goes_through_sobject_collections_with_mixed_results() -> None:
    verdict, [request] = salesforce_call(
        [
            upsert_results(
                ok("003A"),
                failed("DUPLICATES_DETECTED", DUPLICATE),
                failed("INVALID_FIELD", NO_COLUMN, ["foo"]),
                ok("003D", created=False),
            )
        ],
        [
            sf_contact("cus_a", Email="a@example.com"),
            sf_contact("cus_b", Email=None),
            sf_contact("cus_c", foo="x"),
            {"partnerloop_customer_id__c": "cus_d", "LastName": "Dee"},
        ],
    )

    assert records(request) == [
        {KEY: "cus_a", "LastName": "Doe", "Email": "a@example.com"},
        {KEY: "cus_b", "LastName": "Doe"},
        {KEY: "cus_c", "LastName": "Doe", "foo": "x"},
        {KEY: "cus_d", "LastName": "Dee"},
    ]
    assert "sforce-duplicate-rule-header" not in request.headers
    assert (verdict.outcome.ok, verdict.outcome.status_code) == (True, 200)
    assert verdict.remote_ids == {"cus_a": "003A", "cus_d": "003D"}
    assert verdict.rejected == {
        "cus_b": f"DUPLICATES_DETECTED: {DUPLICATE}",
        "cus_c": f"INVALID_FIELD: {NO_COLUMN} (fields: foo)",
    }


def test_salesforce_batches_are_deduplicated_and_split_in_calls_of_200() -> None:
    ids = [f"cus_{n:03}" for n in range(250)]
    contacts = [sf_contact(i) for i in ids] + [sf_contact("CUS_000", LastName="Last")]
    verdict, [first, second] = salesforce_call(
        [upsert_results(*(ok(f"003{n}") for n in range(200))),
         upsert_results(*(ok(f"003{n}") for n in range(200, 250)))],
        contacts,
    )  # fmt: skip

    assert [r[KEY] for r in records(first)] == ids[1:201]
    assert [r[KEY] for r in records(second)] == [*ids[201:], "CUS_000"]
    assert records(second)[-1]["LastName"] == "Last"
    assert verdict.outcome.ok
    assert verdict.remote_ids is not None
    assert (len(verdict.remote_ids), verdict.remote_ids["cus_000"]) == (250, "003249")


def test_the_request_limit_on_a_collection_pauses_the_connector_for_an_hour() -> None:
    limited = reply(403, [{"message": "TotalRequests Limit exceeded.",
                           "errorCode": "REQUEST_LIMIT_EXCEEDED"}])  # fmt: skip
    verdict, [request] = salesforce_call([limited], [sf_contact("cus_a"), sf_contact("cus_b")])

    assert len(records(request)) == 2
    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, False)
    assert verdict.outcome.retry_after == 3600.0
    assert verdict.pause_until == NOW + timedelta(hours=1)
    assert verdict.rejected is None


def test_an_expired_session_on_a_collection_is_refreshed_once() -> None:
    expired = reply(401, [{"message": "Session expired or invalid",
                           "errorCode": "INVALID_SESSION_ID"}])  # fmt: skip
    new_token = fixture_json("salesforce", "restforce_oauth-token-success.json")["access_token"]
    verdict, [refused, token, repeated] = salesforce_call(
        [expired, sf_fixture(200, "restforce_oauth-token-success.json"),
         upsert_results(ok("003A"), ok("003B"))],
        [sf_contact("cus_a"), sf_contact("cus_b")],
    )  # fmt: skip

    assert records(refused) == records(repeated, token=new_token)
    assert (token.method, token.path) == ("POST", "/services/oauth2/token")
    assert parse_qs(token.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["5Aep861refresh"],
        "client_id": ["3MVG9client"],
        "client_secret": ["client-secret-1"],
    }
    assert verdict.outcome.ok
    assert verdict.credentials == {**SF_CREDENTIALS, "access_token": new_token}
    assert verdict.remote_ids == {"cus_a": "003A", "cus_b": "003B"}


def test_a_refused_refresh_on_a_collection_asks_to_reconnect() -> None:
    expired = reply(401, [{"message": "Session expired or invalid",
                           "errorCode": "INVALID_SESSION_ID"}])  # fmt: skip
    verdict, calls = salesforce_call(
        [expired, sf_fixture(400, "restforce_oauth-refresh-error_expired.json")],
        [sf_contact("cus_a"), sf_contact("cus_b")],
    )

    assert len(calls) == 2
    assert verdict.outcome.permanent
    assert verdict.outcome.error == (
        "reconnect Salesforce: expired access/refresh token (invalid_grant)"
    )


def test_allow_duplicates_sends_the_duplicate_rule_header_with_the_collection() -> None:
    verdict, [request] = salesforce_call(
        [upsert_results(ok("003A"), ok("003B"))],
        [sf_contact("cus_a"), sf_contact("cus_b")],
        allow_duplicates="true",
    )
    assert request.headers["sforce-duplicate-rule-header"] == "allowSave=true"
    assert verdict.outcome.ok


def test_every_record_refused_makes_the_collection_a_permanent_failure() -> None:
    verdict, _ = salesforce_call(
        [upsert_results(failed("INVALID_FIELD", NO_COLUMN), failed("INVALID_FIELD", NO_COLUMN))],
        [sf_contact("cus_a"), sf_contact("cus_b")],
    )
    assert (verdict.outcome.ok, verdict.outcome.permanent) == (False, True)
    assert verdict.outcome.error == f"Salesforce refused every contact: INVALID_FIELD: {NO_COLUMN}"
    assert verdict.rejected == dict.fromkeys(["cus_a", "cus_b"], f"INVALID_FIELD: {NO_COLUMN}")


def test_before_api_version_46_a_batch_goes_one_patch_at_a_time() -> None:
    verdict, calls = salesforce_call(
        [sf_fixture(201, "restforce_upsert-created_201.json"),
         sf_fixture(400, "restforce_write-error_400_INVALID_FIELD.json")],
        [sf_contact("cus_a"), sf_contact("cus_b")],
        api_version="v45.0",
    )  # fmt: skip

    assert [(c.method, c.path) for c in calls] == [
        ("PATCH", f"/services/data/v45.0/sobjects/Contact/{KEY}/cus_a"),
        ("PATCH", f"/services/data/v45.0/sobjects/Contact/{KEY}/cus_b"),
    ]
    assert verdict.outcome.ok
    assert verdict.remote_ids == {"cus_a": "foo"}
    assert verdict.rejected == {"cus_b": f"Salesforce answered 400: INVALID_FIELD: {NO_COLUMN}"}


def test_one_salesforce_contact_keeps_its_own_patch_and_gives_its_id() -> None:
    verdict, [request] = salesforce_call(
        [sf_fixture(201, "docs_upsert-new-record_201.json")], [sf_contact("cus_a")]
    )
    assert (request.method, request.path) == ("PATCH", f"{API}/sobjects/Contact/{KEY}/cus_a")
    assert verdict.remote_ids == {"cus_a": "00190000001pPvHAAU"}


def salesforce_read(
    replies: list[Reply],
    keys: Sequence[str],
    properties: Sequence[str],
    **settings: str,
) -> tuple[dict[str, CrmRecord] | Verdict, list[Received]]:
    salesforce = ScriptedServer(replies)
    with salesforce.running(), httpx.Client(timeout=5) as client:
        found = SALESFORCE.read_contacts(
            client,
            settings={"instance_url": salesforce.url, **settings},
            credentials=SF_CREDENTIALS,
            keys=keys,
            properties=properties,
            now=NOW,
        )
    if isinstance(found, ContactsRead):
        assert found.credentials is None  # the token was good: nothing renewed
        return found.records, salesforce.received
    return found, salesforce.received


def soql_of(request: Received) -> str:
    url = urlsplit(request.path)
    assert (request.method, url.path) == ("GET", f"{API}/query")
    assert request.headers["authorization"] == f"Bearer {SF_TOKEN}"
    [soql] = parse_qs(url.query)["q"]
    return soql


def test_a_key_with_quotes_and_backslashes_is_escaped_in_the_soql() -> None:
    answer = fixture_json("salesforce", "restforce_query-success.json")
    answer["records"] = []
    answer["totalSize"] = 0
    found, [request] = salesforce_read(
        [reply(200, answer)], ["o'brien\\x", "plain"], ["Email", "Partnerloop_Customer_Id__c"]
    )

    assert soql_of(request) == (
        f"SELECT Id, {KEY}, Email, LastModifiedDate FROM Contact "  # noqa: S608 (the expected text)
        f"WHERE {KEY} IN ('o\\'brien\\\\x', 'plain')"
    )
    assert found == {}


def test_soql_quoting_escapes_every_reserved_character() -> None:
    assert soql_quote("a'b\"c\\d\ne\rf\tg\bh\fi") == "'a\\'b\\\"c\\\\d\\ne\\rf\\tg\\bh\\fi'"


def test_a_salesforce_read_follows_next_records_url() -> None:
    # restforce's two query pages as published; their Text_Label stands in for the key.
    page1 = sf_fixture(200, "restforce_query-page1-nextRecordsUrl.json")
    page2 = sf_fixture(200, "restforce_query-success.json")
    properties = ["Text_Label", "Checkbox_Label", "Date_Label", "DateTime_Label",
                  "Picklist_Multiselect_Label"]  # fmt: skip
    found, [first, second] = salesforce_read(
        [page1, page2], ["First Page", "Hi there!"], properties, external_id_field="Text_Label"
    )

    assert soql_of(first) == (
        "SELECT Id, Text_Label, Checkbox_Label, Date_Label, DateTime_Label, "
        "Picklist_Multiselect_Label, LastModifiedDate FROM Contact "
        "WHERE Text_Label IN ('First Page', 'Hi there!')"
    )
    assert (second.method, second.path) == ("GET", "/services/data/v26.0/query/01gD")
    assert second.headers["authorization"] == f"Bearer {SF_TOKEN}"
    assert found == {
        "first page": CrmRecord(values={"Text_Label": "First Page"}, updated_at=None),
        "hi there!": CrmRecord(
            values={
                "Text_Label": "Hi there!",
                "Checkbox_Label": False,
                "Date_Label": "2010-01-01",
                "DateTime_Label": "2011-07-07T00:37:00Z",
                "Picklist_Multiselect_Label": "four;six",
            },
            updated_at=None,
        ),
    }


def test_salesforce_values_read_compare_like_with_like() -> None:
    answer = {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {"type": "Contact", "url": f"{API}/sobjects/Contact/003A"},
                "Id": "003A",
                "partnerloop_customer_id__c": "CUS_A",
                "Partnerloop_Order_Count__c": 2.0,
                "Partnerloop_Lifetime_Value__c": 100.5,
                "LastModifiedDate": "2026-11-20T08:15:00.000+0000",
            }
        ],
    }
    found, _ = salesforce_read(
        [reply(200, answer)],
        ["CUS_A"],
        [KEY, "partnerloop_order_count__c", "Partnerloop_Lifetime_Value__c"],
    )

    assert found == {
        "cus_a": CrmRecord(
            values={
                KEY: "CUS_A",
                "partnerloop_order_count__c": 2,
                "Partnerloop_Lifetime_Value__c": Decimal("100.5"),
            },
            updated_at=datetime(2026, 11, 20, 8, 15, tzinfo=UTC),
        )
    }
    # What partnerloop sends, as Salesforce holds it: equal where the values are.
    assert SALESFORCE.as_stored("100.50") == Decimal("100.5")
    assert SALESFORCE.as_stored(2) == 2
    assert SALESFORCE.as_stored("1001") == "1001"  # text stays text


def test_a_salesforce_read_refused_is_a_verdict() -> None:
    found, _ = salesforce_read(
        [sf_fixture(400, "restforce_write-error_400_INVALID_FIELD.json")], ["cus_a"], ["Foo"]
    )
    assert isinstance(found, Verdict)
    assert found.outcome.permanent
    assert found.outcome.error == f"Salesforce answered 400: INVALID_FIELD: {NO_COLUMN}"


def test_a_field_that_is_no_api_name_never_reaches_the_soql() -> None:
    found, calls = salesforce_read([], ["cus_a"], ["Name) FROM User --"])
    assert calls == []
    assert isinstance(found, Verdict)
    assert found.outcome.permanent


# ------------------------------------------------------------------ Pipedrive

PD_TOKEN = "0123456789abcdef0123456789abcdef01234567"
SEARCH = "/api/v2/persons/search"
PERSONS = "/api/v2/persons"


def search_answer(*found: tuple[int, str]) -> Reply:
    # The v2 search answer's shape (tests/integrations/test_pipedrive.py).
    items = [
        {"result_score": 1.0, "item": {"id": i, "type": "person", "name": "Jan", "emails": [e]}}
        for i, e in found
    ]
    return reply(200, {"success": True, "data": {"items": items}, "additional_data": {}})


def pipedrive_call(
    replies: list[Reply], method: str, **arguments: Any
) -> tuple[Any, list[Received]]:
    pipedrive = ScriptedServer(replies)
    with pipedrive.running(), httpx.Client(timeout=5) as client:
        result = getattr(PIPEDRIVE, method)(
            client,
            settings={"api_base_url": pipedrive.url},
            credentials={"api_token": PD_TOKEN},
            now=NOW,
            **arguments,
        )
    return result, pipedrive.received


def described(request: Received) -> tuple[str, str, str | None]:
    assert request.headers["x-api-token"] == PD_TOKEN
    url = urlsplit(request.path)
    term = parse_qs(url.query).get("term")
    return request.method, url.path, term[0] if term else None


def test_a_pipedrive_read_searches_then_reads_each_person() -> None:
    person = {
        "id": 42,
        "name": "Jan Jansen",
        "emails": [{"value": "jan@example.com", "primary": True, "label": "work"}],
        "phones": [],
        "custom_fields": {
            "partnerloop_order_count": 2,
            "partnerloop_lifetime_value": {"value": 100.5, "currency": "EUR"},
            "partnerloop_coupon": None,
        },
        "update_time": "2026-11-01T10:00:00Z",
    }
    found, calls = pipedrive_call(
        [search_answer((42, "jan@example.com")), reply(200, {"success": True, "data": person}),
         search_answer()],
        "read_contacts",
        keys=["Jan@Example.com", "nobody@example.com"],
        properties=["email", "name", "partnerloop_order_count", "partnerloop_lifetime_value",
                    "partnerloop_coupon", "partnerloop_sub1"],
    )  # fmt: skip

    assert [described(c) for c in calls] == [
        ("GET", SEARCH, "jan@example.com"),
        ("GET", f"{PERSONS}/42", None),
        ("GET", SEARCH, "nobody@example.com"),
    ]
    assert isinstance(found, ContactsRead)
    assert found.records == {
        "jan@example.com": CrmRecord(
            values={
                "email": "jan@example.com",
                "name": "Jan Jansen",
                "partnerloop_order_count": 2,
                "partnerloop_lifetime_value": Decimal("100.5"),
                "partnerloop_coupon": None,
            },
            updated_at=datetime(2026, 11, 1, 10, 0, tzinfo=UTC),
        )
    }
    assert PIPEDRIVE.as_stored("100.50") == Decimal("100.5")


def test_a_pipedrive_read_hitting_the_rate_limit_is_a_verdict() -> None:
    limited = reply(429, {"success": False, "error": "Too many requests"}, **{"Retry-After": "7"})
    found, calls = pipedrive_call(
        [limited], "read_contacts", keys=["jan@example.com"], properties=["email"]
    )
    assert len(calls) == 1
    assert isinstance(found, Verdict)
    assert (found.outcome.retry_after, found.pause_until) == (7.0, NOW + timedelta(seconds=7))


def test_a_pipedrive_batch_rejects_a_refused_contact_and_delivers_the_others() -> None:
    refused = reply(400, {"success": False, "error": "Bad request", "error_info": "custom field"})
    created = reply(201, {"success": True, "data": {"id": 8, "name": "b@example.com"}})
    updated = reply(200, {"success": True, "data": {"id": 7, "name": "Ann"}})
    verdict, calls = pipedrive_call(
        [search_answer((7, "a@example.com")), updated,
         search_answer(), refused,
         search_answer(), created],
        "upsert_contacts",
        contacts=[
            {"email": "a@example.com", "name": "Ann"},
            {"email": "bad@example.com", "partnerloop_x": "1"},
            {"email": "b@example.com"},
        ],
    )  # fmt: skip

    assert [described(c)[:2] for c in calls] == [
        ("GET", SEARCH), ("PATCH", f"{PERSONS}/7"),
        ("GET", SEARCH), ("POST", PERSONS),
        ("GET", SEARCH), ("POST", PERSONS),
    ]  # fmt: skip
    assert verdict.outcome.ok
    assert verdict.remote_ids == {"a@example.com": "7", "b@example.com": "8"}
    assert verdict.rejected == {
        "bad@example.com": "Pipedrive person create answered 400: Bad request (custom field)"
    }


def test_a_decimal_kept_by_a_conflict_policy_goes_to_pipedrive_as_its_text() -> None:
    verdict, [_, update] = pipedrive_call(
        [search_answer((7, "a@example.com")), reply(200, {"success": True, "data": {"id": 7}})],
        "upsert_contacts",
        contacts=[{"email": "a@example.com", "partnerloop_lifetime_value": Decimal("100.50")}],
    )
    assert update.json() == {"custom_fields": {"partnerloop_lifetime_value": "100.50"}}
    assert verdict.remote_ids == {"a@example.com": "7"}
