"""Pipedrive OAuth: an OAuth app's access token renewed at the token endpoint
(before it expires, and once on a 401), the renewed credentials handed back to be
stored, a refused renewal dead-lettered, the answer's api_domain used as the API
base; and which credentials a Pipedrive connector accepts. Against a real local
server playing both the OAuth host and the API (told apart by path), answering
with the shapes Pipedrive documents: POST https://oauth.pipedrive.com/oauth/token
(form grant_type=refresh_token&refresh_token=..., HTTP Basic client_id:secret;
answer {access_token, token_type, refresh_token, scope, expires_in, api_domain})."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from partnerloop.integrations import connectors
from partnerloop.integrations.crm import ContactsRead, DealFacts, Verdict
from partnerloop.integrations.models import Connector
from partnerloop.integrations.pipedrive import deals as pipedrive_deals
from partnerloop.integrations.pipedrive.connector import CONNECTOR as PIPEDRIVE
from tests.conftest import Server
from tests.factories.orders import customer_sale
from tests.factories.programs import create_program_api
from tests.support.clock import Clock, worker
from tests.support.http import Received, Reply, ScriptedServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
JSON = {"content-type": "application/json"}
TOKEN_PATH = "/oauth/token"
SEARCH = "/api/v2/persons/search"
PERSONS = "/api/v2/persons"
DEAL_SEARCH = "/api/v2/deals/search"
DEALS = "/api/v2/deals"
FIELD = "8f4b27fbc8d7b94e5bdc1fd8b3c1ba0d1c44cbf4"  # a deal custom field's 40-char key
CLIENT_ID = "b4d083d9216986345b32"
CLIENT_SECRET = "d6c2a7b1e0f94c3a8e5d2b7c9f1a4e6d8b0c2e4f"
OLD_ACCESS = "53:179:expired0c4d604ce0695dad44a12bad44c9"
OLD_REFRESH = "53:179:5de81994d77491d22bc10eab3bc0810f84864297"
NEW_ACCESS = "53:179:6317ef33a9fb0c4d604ce0695dad44a12bad44c9"
NEW_REFRESH = "53:179:rotatedd77491d22bc10eab3bc0810f84864297"
OAUTH = {"refresh_token": OLD_REFRESH, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
INVALID_GRANT = {
    "success": False,
    "message": "Invalid grant: refresh token is invalid",
    "error": "invalid_grant",
}


def answer(status: int, body: Any, **headers: str) -> Reply:
    return Reply(status, {**JSON, **headers}, json.dumps(body).encode())


def tokens(
    access: str = NEW_ACCESS,
    refresh: str = NEW_REFRESH,
    *,
    api_domain: str = "https://acme.pipedrive.com",
    expires_in: int = 3599,
) -> Reply:
    # The documented answer of POST /oauth/token (and its api_domain, since 2020).
    return answer(
        200,
        {
            "access_token": access,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "scope": "base,deals:full,contacts:full",
            "expires_in": expires_in,
            "api_domain": api_domain,
        },
    )


def unauthorized() -> Reply:
    return answer(401, {"success": False, "error": "unauthorized access", "errorCode": 401})


def no_person() -> Reply:
    return answer(200, {"success": True, "data": {"items": []}, "additional_data": {}})


def created(person_id: int, email: str) -> Reply:
    data = {"id": person_id, "name": email, "emails": [{"value": email, "primary": True}]}
    return answer(201, {"success": True, "data": data})


def person(person_id: int, email: str) -> dict[str, Any]:
    return {
        "id": person_id,
        "name": "Jan Jansen",
        "emails": [{"value": email, "primary": True, "label": "work"}],
        "custom_fields": {},
        "update_time": "2026-11-01T10:00:00Z",
    }


def found(person_id: int, email: str) -> Reply:
    item = {"result_score": 1.0, "item": {"id": person_id, "type": "person", "emails": [email]}}
    return answer(200, {"success": True, "data": {"items": [item]}})


def expiring_in(seconds: int) -> dict[str, str]:
    return {
        **OAUTH,
        "access_token": OLD_ACCESS,
        "expires_at": (NOW + timedelta(seconds=seconds)).isoformat(),
    }


def renewed(**changes: str) -> dict[str, str]:
    """The credentials after a renewal with `tokens()` at NOW."""
    return {
        **OAUTH,
        "access_token": NEW_ACCESS,
        "refresh_token": NEW_REFRESH,
        "expires_at": (NOW + timedelta(seconds=3599)).isoformat(),
        "api_domain": "https://acme.pipedrive.com",
        **changes,
    }


def upsert(
    replies: list[Reply],
    credentials: dict[str, str],
    *emails: str,
    settings: dict[str, str] | None = None,
) -> tuple[Verdict, list[Received]]:
    remote = ScriptedServer(replies)
    with remote.running(), httpx.Client(timeout=5) as client:
        verdict = PIPEDRIVE.upsert_contacts(
            client,
            settings=settings or {"api_base_url": remote.url, "oauth_base_url": remote.url},
            credentials=credentials,
            contacts=[{"email": email} for email in emails or ("jan@example.com",)],
            now=NOW,
        )
    return verdict, remote.received


def bearer(request: Received) -> str | None:
    assert "x-api-token" not in request.headers
    return request.headers.get("authorization")


def path(request: Received) -> str:
    return urlsplit(request.path).path


def assert_token_request(request: Received, refresh_token: str = OLD_REFRESH) -> None:
    assert (request.method, request.path) == ("POST", TOKEN_PATH)
    assert request.headers["authorization"] == BASIC
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (
        request.body
        == f"grant_type=refresh_token&refresh_token={refresh_token}".replace(":", "%3A").encode()
    )
    assert parse_qs(request.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [refresh_token],
    }


# --- the connector against the token endpoint and the API -----------------------------


def test_a_token_about_to_expire_is_renewed_before_the_call() -> None:
    verdict, received = upsert(
        [tokens(), no_person(), created(7, "jan@example.com")], expiring_in(59)
    )

    token, search, create = received
    assert_token_request(token)
    assert [path(search), path(create)] == [SEARCH, PERSONS]
    assert [bearer(search), bearer(create)] == [f"Bearer {NEW_ACCESS}"] * 2
    assert verdict.outcome.ok, verdict.outcome.error
    assert verdict.remote_ids == {"jan@example.com": "7"}
    # Every key, with the rotated refresh token and the new expiry, to be stored.
    assert verdict.credentials == renewed()


def test_a_token_valid_for_longer_than_a_minute_is_used_as_is() -> None:
    verdict, received = upsert([no_person(), created(7, "jan@example.com")], expiring_in(61))

    assert [path(r) for r in received] == [SEARCH, PERSONS]
    assert [bearer(r) for r in received] == [f"Bearer {OLD_ACCESS}"] * 2
    assert verdict.outcome.ok
    assert verdict.credentials is None  # nothing new to store


def test_an_oauth_app_without_an_access_token_gets_one_first() -> None:
    verdict, received = upsert([tokens(), no_person(), created(7, "jan@example.com")], OAUTH)

    assert_token_request(received[0])
    assert bearer(received[1]) == f"Bearer {NEW_ACCESS}"
    assert verdict.credentials == renewed()


def test_a_401_renews_the_token_once_and_repeats_the_call() -> None:
    # No expires_at: the token is used until Pipedrive says it is no longer valid.
    credentials = {**OAUTH, "access_token": OLD_ACCESS}
    verdict, received = upsert(
        [unauthorized(), tokens(refresh=OLD_REFRESH), no_person(), created(8, "jan@example.com")],
        credentials,
    )

    refused, token, search, create = received
    assert (path(refused), bearer(refused)) == (SEARCH, f"Bearer {OLD_ACCESS}")
    assert_token_request(token)
    assert (path(search), bearer(search)) == (SEARCH, f"Bearer {NEW_ACCESS}")
    assert (path(create), bearer(create)) == (PERSONS, f"Bearer {NEW_ACCESS}")
    assert verdict.outcome.ok
    # Pipedrive kept the refresh token this time: the same one is stored.
    assert verdict.credentials == renewed(refresh_token=OLD_REFRESH)


def test_a_401_after_the_renewal_is_retried_with_the_new_token_kept() -> None:
    verdict, received = upsert(
        [unauthorized(), tokens(), unauthorized()], {**OAUTH, "access_token": OLD_ACCESS}
    )

    assert [path(r) for r in received] == [SEARCH, TOKEN_PATH, SEARCH]  # renewed once
    assert not verdict.outcome.ok
    assert not verdict.outcome.permanent
    assert "token is wrong or was revoked" in str(verdict.outcome.error)
    assert verdict.credentials == renewed()  # the renewal is kept all the same


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            400,
            INVALID_GRANT,
            "reconnect Pipedrive: Invalid grant: refresh token is invalid (invalid_grant)",
        ),
        # The generic OAuth 2.0 error shape (RFC 6749 section 5.2).
        (
            400,
            {"error": "invalid_grant", "error_description": "Refresh token has expired"},
            "reconnect Pipedrive: Refresh token has expired (invalid_grant)",
        ),
        # Pipedrive's API error shape: the text in `error`, a hint in `error_info`.
        (
            400,
            {
                "success": False,
                "error": "Bad request",
                "error_info": "Please check developers.pipedrive.com for more information "
                "about Pipedrive API.",
            },
            "reconnect Pipedrive: Bad request (HTTP 400)",
        ),
        # A wrong client secret: the client's authentication fails.
        (
            401,
            {"success": False, "message": "Invalid client", "error": "invalid_client"},
            "reconnect Pipedrive: Invalid client (invalid_client)",
        ),
    ],
)
def test_a_refused_renewal_is_permanent_and_ends_the_batch(
    status: int, body: dict[str, Any], error: str
) -> None:
    verdict, received = upsert(
        [answer(status, body)], expiring_in(0), "a@example.com", "b@example.com"
    )

    assert [path(r) for r in received] == [TOKEN_PATH]  # once, and no call to the API
    assert verdict.outcome.error == error
    assert verdict.outcome.permanent
    assert verdict.rejected is None  # no contact is to blame
    assert verdict.credentials is None
    assert OLD_REFRESH not in error


def test_the_token_endpoint_down_is_retried() -> None:
    verdict, received = upsert(
        [Reply(503, {"content-type": "text/html"}, b"<h1>Service Unavailable</h1>")],
        expiring_in(0),
    )

    assert [path(r) for r in received] == [TOKEN_PATH]
    assert not verdict.outcome.ok
    assert not verdict.outcome.permanent
    assert verdict.outcome.error == "Pipedrive's token endpoint answered 503"


def test_the_api_domain_is_the_base_when_the_settings_name_none() -> None:
    remote = ScriptedServer(
        [
            tokens(api_domain=""),  # filled in below: the server's own URL
            no_person(),
            created(9, "jan@example.com"),
            found(9, "jan@example.com"),
        ]
    )
    remote.replies[0] = tokens(api_domain=remote.url + "/")
    settings = {"oauth_base_url": remote.url}  # no api_base_url, no company_domain
    with remote.running(), httpx.Client(timeout=5) as client:
        first = PIPEDRIVE.upsert_contacts(
            client,
            settings=settings,
            credentials=OAUTH,
            contacts=[{"email": "jan@example.com"}],
            now=NOW,
        )
        assert first.credentials is not None
        # The next delivery, with the stored credentials: same base, no renewal.
        second = PIPEDRIVE.upsert_contacts(
            client,
            settings=settings,
            credentials=first.credentials,
            contacts=[{"email": "jan@example.com"}],
            now=NOW + timedelta(minutes=30),
        )

    assert [path(r) for r in remote.received] == [TOKEN_PATH, SEARCH, PERSONS, SEARCH]
    assert first.credentials == renewed(api_domain=remote.url)
    assert (first.outcome.ok, second.outcome.ok) == (True, True)
    assert second.credentials is None


def test_the_settings_base_wins_over_the_api_domain() -> None:
    # api_domain points nowhere reachable: every API call must go to api_base_url.
    verdict, received = upsert(
        [tokens(api_domain="https://unreachable.invalid"), no_person(), created(3, "j@x.com")],
        OAUTH,
        "j@x.com",
    )

    assert [path(r) for r in received] == [TOKEN_PATH, SEARCH, PERSONS]
    assert verdict.outcome.ok
    assert verdict.credentials == renewed(api_domain="https://unreachable.invalid")


def test_an_access_token_alone_that_expires_asks_to_reconnect() -> None:
    verdict, received = upsert([unauthorized()], {"access_token": OLD_ACCESS})

    assert [path(r) for r in received] == [SEARCH]  # no renewal: nothing to renew with
    assert verdict.outcome.permanent
    assert verdict.outcome.error == (
        "reconnect Pipedrive: the access token expired and no refresh_token was given"
    )
    assert verdict.outcome.status_code == 401


def test_an_api_token_refused_is_still_retried() -> None:
    verdict, received = upsert([unauthorized()], {"api_token": "0123456789abcdef"})

    assert [path(r) for r in received] == [SEARCH]
    assert not verdict.outcome.permanent
    assert "token is wrong or was revoked" in str(verdict.outcome.error)


def test_a_read_renewal_is_handed_back_for_the_upsert_that_follows() -> None:
    # The read renews the token and hands the new credentials back (ContactsRead);
    # the upsert after it (same delivery) sends them instead of spending the
    # refresh token Pipedrive has rotated away.
    remote = ScriptedServer(
        [
            tokens(),
            found(42, "jan@example.com"),
            answer(200, {"success": True, "data": person(42, "jan@example.com")}),
            found(42, "jan@example.com"),
            answer(200, {"success": True, "data": person(42, "jan@example.com")}),
        ]
    )
    settings = {"api_base_url": remote.url, "oauth_base_url": remote.url}
    with remote.running(), httpx.Client(timeout=5) as client:
        read = PIPEDRIVE.read_contacts(
            client,
            settings=settings,
            credentials=expiring_in(10),
            keys=["jan@example.com"],
            properties=["email", "name"],
            now=NOW,
        )
        assert isinstance(read, ContactsRead)
        assert read.credentials is not None
        verdict = PIPEDRIVE.upsert_contacts(
            client,
            settings=settings,
            credentials=read.credentials,
            contacts=[{"email": "jan@example.com", "name": "Jan"}],
            now=NOW,
        )

    assert set(read.records) == {"jan@example.com"}
    assert dict(read.credentials) == renewed()
    assert [path(r) for r in remote.received] == [
        TOKEN_PATH,
        SEARCH,
        f"{PERSONS}/42",
        SEARCH,
        f"{PERSONS}/42",
    ]
    assert [bearer(r) for r in remote.received[1:]] == [f"Bearer {NEW_ACCESS}"] * 4
    assert verdict.outcome.ok
    assert verdict.credentials is None  # nothing renewed a second time


def test_a_deals_call_renews_the_token() -> None:
    deal = DealFacts(
        order_id="1001",
        name="Order #1001",
        amount_minor=1999,
        currency="EUR",
        stage="won",
        ordered_at=NOW,
        contact_remote_id="7",
        affiliate=None,
    )
    remote = ScriptedServer(
        [
            tokens(),
            answer(200, {"success": True, "data": {"items": []}}),
            answer(201, {"success": True, "data": {"id": 55}}),
        ]
    )
    with remote.running(), httpx.Client(timeout=5) as client:
        verdict = pipedrive_deals.upsert_deals(
            client,
            settings={
                "api_base_url": remote.url,
                "oauth_base_url": remote.url,
                "order_id_field": FIELD,
            },
            credentials=expiring_in(30),
            deals=[deal],
            now=NOW,
        )

    token, search, create = remote.received
    assert_token_request(token)
    assert [path(search), path(create)] == [DEAL_SEARCH, DEALS]
    assert [bearer(search), bearer(create)] == [f"Bearer {NEW_ACCESS}"] * 2
    assert verdict.outcome.ok
    assert verdict.remote_ids == {"1001": "55"}
    assert verdict.credentials == renewed()


def test_a_refused_renewal_refuses_no_deal_in_particular() -> None:
    remote = ScriptedServer([answer(400, INVALID_GRANT)])
    with remote.running(), httpx.Client(timeout=5) as client:
        verdict = pipedrive_deals.upsert_deals(
            client,
            settings={
                "api_base_url": remote.url,
                "oauth_base_url": remote.url,
                "order_id_field": FIELD,
            },
            credentials=OAUTH,
            deals=[
                DealFacts("1", "Order #1", 100, "EUR", "won", NOW, None, None),
                DealFacts("2", "Order #2", 100, "EUR", "won", NOW, None, None),
            ],
            now=NOW,
        )

    assert [path(r) for r in remote.received] == [TOKEN_PATH]
    assert verdict.outcome.permanent
    assert str(verdict.outcome.error).startswith("reconnect Pipedrive: Invalid grant")
    assert verdict.rejected is None


# --- through the API and the worker ------------------------------------------------------


def connect(
    api: httpx.Client, program_id: str, url: str, credentials: dict[str, str], **settings: str
) -> dict[str, Any]:
    response = api.post(
        "/api/v1/connectors",
        json={
            "program_id": program_id,
            "kind": "pipedrive",
            "settings": {"api_base_url": url, "oauth_base_url": url, **settings},
            "credentials": credentials,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def stored_credentials(server: Server, connector_id: str) -> dict[str, str]:
    with server.runtime.sessions() as db:
        row = db.get_one(Connector, connector_id)
        return dict(connectors.config_of(db, server.runtime.cipher, row).credentials)


def deliveries(api: httpx.Client, connector_id: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/deliveries", params={"connector_id": connector_id})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_the_renewed_token_is_stored_and_the_next_delivery_uses_it(server: Server) -> None:
    remote = ScriptedServer(
        [
            tokens(),
            no_person(),
            created(7, "first@example.com"),
            no_person(),
            created(8, "second@example.com"),
        ]
    )
    clock = Clock()
    with remote.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], remote.url, OAUTH)
        customer_sale(api, program["id"], "oauth-1", "10.00", "first@example.com")
        worker(server.runtime, clock).drain()
        after_first = stored_credentials(server, connector["id"])
        clock.advance(600)  # ten minutes on: the token is still good for 50
        customer_sale(api, program["id"], "oauth-2", "10.00", "second@example.com")
        worker(server.runtime, clock).drain()
        after_second = stored_credentials(server, connector["id"])
        done = deliveries(api, connector["id"])

    assert [path(r) for r in remote.received] == [TOKEN_PATH, SEARCH, PERSONS, SEARCH, PERSONS]
    assert_token_request(remote.received[0])
    assert [bearer(r) for r in remote.received[1:]] == [f"Bearer {NEW_ACCESS}"] * 4
    assert {k: v for k, v in after_first.items() if k != "expires_at"} == {
        **OAUTH,
        "access_token": NEW_ACCESS,
        "refresh_token": NEW_REFRESH,
        "api_domain": "https://acme.pipedrive.com",
    }
    renewed_at = datetime.fromisoformat(after_first["expires_at"]) - timedelta(seconds=3599)
    assert abs(renewed_at - clock.now) < timedelta(minutes=11)
    assert after_second == after_first  # not renewed again
    assert [d["state"] for d in done] == ["delivered", "delivered"]
    # The token endpoint's answer (it holds tokens) is kept out of the attempt log.
    assert all(NEW_ACCESS not in json.dumps(d) and NEW_REFRESH not in json.dumps(d) for d in done)


def test_with_conflict_policies_the_read_renews_once_and_the_upsert_uses_it(
    server: Server,
) -> None:
    remote = ScriptedServer(
        [
            tokens(),
            found(42, "jan@example.com"),  # the read: search, then the person
            answer(200, {"success": True, "data": person(42, "jan@example.com")}),
            found(42, "jan@example.com"),  # the upsert: search, then update
            answer(200, {"success": True, "data": person(42, "jan@example.com")}),
        ]
    )
    with remote.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], remote.url, OAUTH)
        policies = api.put(
            f"/api/v1/connectors/{connector['id']}/conflicts",
            json={"conflicts": {"name": {"policy": "never_overwrite"}}},
        )
        assert policies.status_code == 200, policies.text
        customer_sale(api, program["id"], "oauth-read", "10.00", "jan@example.com")
        worker(server.runtime, Clock()).drain()
        stored = stored_credentials(server, connector["id"])
        [done] = deliveries(api, connector["id"])

    assert [path(r) for r in remote.received] == [
        TOKEN_PATH,
        SEARCH,
        f"{PERSONS}/42",
        SEARCH,
        f"{PERSONS}/42",
    ]
    assert [bearer(r) for r in remote.received[1:]] == [f"Bearer {NEW_ACCESS}"] * 4
    assert (stored["access_token"], stored["refresh_token"]) == (NEW_ACCESS, NEW_REFRESH)
    assert done["state"] == "delivered"


def test_a_refused_renewal_dead_letters_and_keeps_the_credentials(server: Server) -> None:
    remote = ScriptedServer([answer(400, INVALID_GRANT)])
    with remote.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], remote.url, OAUTH)
        customer_sale(api, program["id"], "oauth-3", "10.00", "dead@example.com")
        worker(server.runtime, Clock()).drain()
        [dead] = deliveries(api, connector["id"])
        stored = stored_credentials(server, connector["id"])

    assert (dead["state"], dead["attempts"]) == ("dead", 1)
    assert dead["last_error"] == (
        "reconnect Pipedrive: Invalid grant: refresh token is invalid (invalid_grant)"
    )
    assert [path(r) for r in remote.received] == [TOKEN_PATH]
    assert stored == OAUTH


def test_orders_as_deals_use_the_token_the_contact_renewed(server: Server) -> None:
    remote = ScriptedServer(
        [
            tokens(),
            no_person(),
            created(7, "deal@example.com"),
            answer(200, {"success": True, "data": {"items": []}}),
            answer(201, {"success": True, "data": {"id": 55}}),
        ]
    )
    with remote.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], remote.url, OAUTH, deals="on", order_id_field=FIELD)
        customer_sale(api, program["id"], "oauth-deal-1", "19.99", "deal@example.com")
        worker(server.runtime, Clock()).drain()
        [delivery] = deliveries(api, connector["id"])
        stored = stored_credentials(server, connector["id"])

    assert [path(r) for r in remote.received] == [TOKEN_PATH, SEARCH, PERSONS, DEAL_SEARCH, DEALS]
    assert [bearer(r) for r in remote.received[1:]] == [f"Bearer {NEW_ACCESS}"] * 4
    assert remote.received[4].json()["custom_fields"] == {FIELD: "oauth-deal-1"}
    assert delivery["state"] == "delivered"
    assert stored["access_token"] == NEW_ACCESS


# --- which credentials a connector takes ---------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"api_token": "0123456789abcdef0123456789abcdef01234567"},
        {"access_token": OLD_ACCESS},
        OAUTH,
        {**OAUTH, "access_token": OLD_ACCESS, "expires_at": "2026-11-24T13:00:00+00:00"},
        {**OAUTH, "expires_at": "2026-11-24T13:00:00Z"},
    ],
    ids=["api_token", "access_token", "oauth_app", "oauth_app_with_token", "oauth_app_z"],
)
def test_accepted_credentials(server: Server, credentials: dict[str, str]) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={"program_id": program["id"], "kind": "pipedrive", "credentials": credentials},
        )

    assert response.status_code == 201, response.text
    assert response.json()["has_credentials"] is True
    assert CLIENT_SECRET not in response.text


@pytest.mark.parametrize(
    ("credentials", "field", "code"),
    [
        ({}, "credentials", "missing_credential"),
        (
            {"refresh_token": OLD_REFRESH, "client_id": CLIENT_ID},
            "credentials.client_secret",
            "missing_credential",
        ),
        (
            {"client_secret": CLIENT_SECRET, "access_token": OLD_ACCESS},
            "credentials.refresh_token",
            "missing_credential",
        ),
        (
            {"access_token": OLD_ACCESS, "expires_at": "2026-11-24T13:00:00Z"},
            "credentials.expires_at",
            "invalid_credential",
        ),
        ({**OAUTH, "expires_at": "in an hour"}, "credentials.expires_at", "invalid_credential"),
        ({"api_token": "abc", **OAUTH}, "credentials.refresh_token", "invalid_credential"),
        (
            {"api_token": "abc", "access_token": OLD_ACCESS},
            "credentials.access_token",
            "invalid_credential",
        ),
        ({"api_token": "abc", "password": "x"}, "credentials.password", "unknown_credential"),
    ],
    ids=[
        "none",
        "no_client_secret",
        "no_refresh_token",
        "expires_at_without_oauth_app",
        "expires_at_not_iso",
        "api_token_and_oauth_app",
        "api_token_and_access_token",
        "unknown",
    ],
)
def test_refused_credentials(
    server: Server, credentials: dict[str, str], field: str, code: str
) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={"program_id": program["id"], "kind": "pipedrive", "credentials": credentials},
        )

    assert response.status_code == 422, response.text
    assert (response.json()["field"], response.json()["code"]) == (field, code)
    assert CLIENT_SECRET not in response.text


def test_the_oauth_base_url_must_be_a_url(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "pipedrive",
                "settings": {"oauth_base_url": "oauth.pipedrive.com"},
                "credentials": OAUTH,
            },
        )

    assert (response.status_code, response.json()["field"]) == (422, "settings.oauth_base_url")
