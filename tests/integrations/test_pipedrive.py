"""Pipedrive: customers found by e-mail and updated, or created, as persons, against
a local server answering with the shapes Pipedrive documents (API v2,
{"success": true, "data": ...}; no Pipedrive-written REST fixture exists, see
../shared/fixtures/NOTES.md section 7), with its rate limit and errors handled."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from partnerloop.sync.models import OutboxMessage
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.clock import Clock, worker
from tests.support.http import Received, Reply, ScriptedServer

TOKEN = "0123456789abcdef0123456789abcdef01234567"
SEARCH = "/api/v2/persons/search"
PERSONS = "/api/v2/persons"
JSON = {"content-type": "application/json"}


def answer(status: int, body: dict[str, Any], **headers: str) -> Reply:
    return Reply(status, {**JSON, **headers}, json.dumps(body).encode())


def no_person() -> Reply:
    return answer(200, {"success": True, "data": {"items": []}, "additional_data": {}})


def person_found(person_id: int, email: str) -> Reply:
    item = {
        "id": person_id,
        "type": "person",
        "name": "Jan Jansen",
        "phones": [],
        "emails": [email],
        "visible_to": 3,
        "owner": {"id": 1},
        "organization": None,
        "custom_fields": [],
        "notes": [],
        "update_time": "2026-11-01T10:00:00Z",
    }
    return answer(
        200,
        {"success": True, "data": {"items": [{"result_score": 1.0, "item": item}]}},
    )


def person(status: int, person_id: int, email: str) -> Reply:
    data = {
        "id": person_id,
        "name": email,
        "emails": [{"value": email, "primary": True, "label": "work"}],
        "phones": [],
    }
    return answer(status, {"success": True, "data": data})


def connect(api: httpx.Client, program_id: str, url: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        "/api/v1/connectors",
        json={
            "program_id": program_id,
            "kind": "pipedrive",
            "settings": {"api_base_url": url},
            "credentials": {"api_token": TOKEN},
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def sale(api: httpx.Client, program_id: str, order_id: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        "/api/v1/conversions",
        json={
            "program_id": program_id,
            "order_id": order_id,
            "amount": "10.00",
            "currency": "EUR",
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def checked(request: Received) -> tuple[str, str, Any]:
    """(method, path, JSON body or search query), after checking the documented shape."""
    assert request.headers["x-api-token"] == TOKEN
    assert "authorization" not in request.headers
    url = urlsplit(request.path)
    assert "api_token" not in url.query  # the token never goes into a URL
    if request.method == "GET":
        assert url.path == SEARCH
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert set(query) == {"term", "fields", "exact_match"}
        assert (query["fields"], query["exact_match"]) == ("email", "true")
        return ("GET", url.path, query["term"])
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert set(body) <= {"name", "emails", "custom_fields"}
    if request.method == "POST":
        assert url.path == PERSONS
        assert set(body) >= {"name", "emails"}
    else:
        assert request.method == "PATCH"
        assert url.path.startswith(PERSONS + "/")
    return (request.method, url.path, body)


def calls(server: ScriptedServer) -> list[tuple[str, str, Any]]:
    return [checked(request) for request in server.received]


def deliveries(api: httpx.Client, connector_id: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/deliveries", params={"connector_id": connector_id})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_a_new_customer_is_created_as_a_person(server: Server) -> None:
    pipedrive = ScriptedServer([no_person(), person(201, 7, "jan@example.com")])
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], pipedrive.url)
        affiliate = create_affiliate_api(api, program["id"], name="Anna de Vries")
        link = create_link_api(api, program["id"], affiliate["id"])
        order = sale(
            api,
            program["id"],
            "pd-1",
            amount="100.00",
            customer_email="Jan@Example.com",
            click_id=click(api, link["code"]),
        )
        worker(server.runtime, Clock()).drain()
        [delivery] = deliveries(api, connector["id"])

    assert calls(pipedrive) == [
        ("GET", SEARCH, "jan@example.com"),
        (
            "POST",
            PERSONS,
            {
                # The API took no customer name: the e-mail stands in (Pipedrive needs one).
                "name": "jan@example.com",
                "emails": [{"value": "jan@example.com", "primary": True, "label": "work"}],
                "custom_fields": {
                    "partnerloop_lead_source": "Affiliate",
                    "partnerloop_affiliate_id": affiliate["id"],
                    "partnerloop_affiliate": "Anna de Vries",
                    "partnerloop_first_order_date": order["ordered_at"][:10],
                    "partnerloop_order_count": 1,
                    "partnerloop_lifetime_value": "100.00",
                    "partnerloop_last_order_id": "pd-1",
                },
            },
        ),
    ]
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 1)
    assert (connector["direction"], connector["secret"]) == ("out", "")


def test_a_known_customer_is_updated(server: Server) -> None:
    pipedrive = ScriptedServer(
        [person_found(42, "known@example.com"), person(200, 42, "known@example.com")]
    )
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], pipedrive.url)
        order = sale(api, program["id"], "pd-2", customer_email="known@example.com")
        worker(server.runtime, Clock()).drain()
        [delivery] = deliveries(api, connector["id"])

    assert calls(pipedrive) == [
        ("GET", SEARCH, "known@example.com"),
        (
            "PATCH",
            f"{PERSONS}/42",
            # No mapped name: the name a rep typed is kept; the e-mail list too.
            {
                "custom_fields": {
                    "partnerloop_first_order_date": order["ordered_at"][:10],
                    "partnerloop_order_count": 1,
                    "partnerloop_lifetime_value": "10.00",
                    "partnerloop_last_order_id": "pd-2",
                }
            },
        ),
    ]
    assert delivery["state"] == "delivered"


def test_the_rate_limit_waits_for_retry_after(server: Server) -> None:
    limited = answer(
        429,
        {"success": False, "error": "Too many requests", "errorCode": 429},
        **{"Retry-After": "7", "x-ratelimit-reset": "30"},
    )
    pipedrive = ScriptedServer([limited, no_person(), person(201, 8, "r@example.com")])
    clock = Clock()
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], pipedrive.url)
        sale(api, program["id"], "pd-3", customer_email="r@example.com")
        running = worker(server.runtime, clock)
        running.drain()
        clock.advance(6)
        running.drain()
        before = len(pipedrive.received)
        clock.advance(2)
        running.drain()
        [delivery] = deliveries(api, connector["id"])

    assert before == 1
    assert [c[:2] for c in calls(pipedrive)] == [
        ("GET", SEARCH),
        ("GET", SEARCH),
        ("POST", PERSONS),
    ]
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 2)


def test_a_refused_request_is_dead_lettered_with_pipedrives_error_and_replayable(
    server: Server,
) -> None:
    refused = answer(
        400,
        {
            "success": False,
            "error": "Bad request",
            "error_info": "Please check developers.pipedrive.com for more information "
            "about Pipedrive API.",
            "data": None,
            "additional_data": None,
        },
    )
    pipedrive = ScriptedServer([no_person(), refused, no_person(), person(201, 9, "v@example.com")])
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], pipedrive.url)
        sale(api, program["id"], "pd-4", customer_email="v@example.com")
        worker(server.runtime, Clock()).drain()
        [dead] = api.get(
            "/api/v1/deliveries", params={"connector_id": connector["id"], "state": "dead"}
        ).json()["items"]
        replayed = api.post(f"/api/v1/deliveries/{dead['id']}/replay")
        worker(server.runtime, Clock()).drain()
        after = api.get(f"/api/v1/deliveries/{dead['id']}").json()

    assert dead["attempts"] == 1  # not retried: the request itself is wrong
    assert "Bad request" in dead["last_error"]
    assert "400" in dead["last_error"]
    assert replayed.status_code == 200, replayed.text
    assert after["state"] == "delivered"
    assert [c[:2] for c in calls(pipedrive)] == [
        ("GET", SEARCH),
        ("POST", PERSONS),
        ("GET", SEARCH),
        ("POST", PERSONS),
    ]


def test_a_pipedrive_that_is_down_gets_the_customer_once_it_is_back(server: Server) -> None:
    down = Reply(503, {"content-type": "text/html"}, b"<h1>Service Unavailable</h1>")
    pipedrive = ScriptedServer([down, down, down, no_person(), person(201, 10, "d@example.com")])
    clock = Clock()
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], pipedrive.url)
        sale(api, program["id"], "pd-5", customer_email="d@example.com")
        running = worker(server.runtime, clock)
        for _ in range(8):
            running.drain()
            clock.advance(3600)
        [delivery] = deliveries(api, connector["id"])

    with server.runtime.sessions() as db:
        [message] = db.query(OutboxMessage).filter_by(destination_id=connector["id"]).all()
    assert message.state == "delivered"
    assert delivery["attempts"] == 4
    made = [c[:2] for c in calls(pipedrive)]
    assert made.count(("POST", PERSONS)) == 1  # created exactly once
    assert made == [("GET", SEARCH)] * 4 + [("POST", PERSONS)]


def test_a_customer_without_email_is_not_sent(server: Server) -> None:
    pipedrive = ScriptedServer([])
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], pipedrive.url)
        sale(api, program["id"], "pd-6")
        worker(server.runtime, Clock()).drain()
        items = deliveries(api, connector["id"])

    assert pipedrive.received == []
    assert [d["state"] for d in items] == ["delivered"] * len(items)


def test_an_oauth_token_goes_in_the_authorization_header(server: Server) -> None:
    pipedrive = ScriptedServer([no_person(), person(201, 11, "o@example.com")])
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "pipedrive",
                "settings": {"api_base_url": pipedrive.url},
                "credentials": {"access_token": "v1:oauth-access-token"},
            },
        )
        assert response.status_code == 201, response.text
        sale(api, program["id"], "pd-7", customer_email="o@example.com")
        worker(server.runtime, Clock()).drain()

    assert [r.headers.get("authorization") for r in pipedrive.received] == [
        "Bearer v1:oauth-access-token"
    ] * 2
    assert all("x-api-token" not in r.headers for r in pipedrive.received)


def test_a_revoked_token_is_retried_with_a_clear_error(server: Server) -> None:
    unauthorized = answer(
        401,
        {"success": False, "error": "unauthorized access", "errorCode": 401},
    )
    pipedrive = ScriptedServer([unauthorized])
    with pipedrive.running(), server.client() as api:
        program = create_program_api(api)
        connector = connect(api, program["id"], pipedrive.url)
        sale(api, program["id"], "pd-8", customer_email="t@example.com")
        worker(server.runtime, Clock()).drain()
        [delivery] = deliveries(api, connector["id"])

    assert delivery["state"] != "dead"
    assert delivery["state"] != "delivered"
    assert "token is wrong or was revoked" in delivery["last_error"]


def test_a_bad_company_domain_is_refused(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "pipedrive",
                "settings": {"company_domain": "https://acme.pipedrive.com"},
            },
        )
    assert (response.status_code, response.json()["field"]) == (
        422,
        "settings.company_domain",
    )
