"""Bad input gets a 4xx problem+json that names the field, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from partnerloop.orders.models import Conversion
from partnerloop.tracking.models import Link
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api


def _conversions(server: Server, program_id: str) -> int:
    with server.runtime.sessions() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(Conversion)
                .where(Conversion.program_id == program_id)
            )
            or 0
        )


def _assert_problem(response: Any, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"], body.get("field")) == (status, code, field)
    assert body["type"].endswith(code)
    assert body["detail"]


@pytest.mark.parametrize(
    ("changes", "status", "code", "field"),
    [
        ({"amount": "19.999"}, 422, "invalid_amount", "amount"),
        ({"amount": "-5.00"}, 422, "invalid_amount", "amount"),
        ({"amount": "abc"}, 422, "invalid_amount", "amount"),
        ({"amount": "1e3"}, 422, "invalid_amount", "amount"),
        ({"amount": "1,000.00"}, 422, "invalid_amount", "amount"),
        ({"amount": 19.99}, 422, "invalid_field", "amount"),
        ({"currency": "XYZ"}, 422, "unknown_currency", "currency"),
        ({"currency": "eur"}, 422, "unknown_currency", "currency"),
        ({"currency": "USD"}, 422, "currency_mismatch", "currency"),
        ({"order_id": "  "}, 422, "invalid_order_id", "order_id"),
        ({"order_id": "x" * 256}, 422, "invalid_order_id", "order_id"),
        ({"unexpected": 1}, 422, "invalid_field", "unexpected"),
        ({"items": [{"price": "1.001"}]}, 422, "invalid_amount", "items[0].price"),
        ({"ordered_at": "2026-01-01T00:00:00"}, 422, "invalid_date", "ordered_at"),
    ],
)
def test_bad_conversion_is_refused_and_nothing_stored(
    server: Server, changes: dict[str, Any], status: int, code: str, field: str
) -> None:
    with server.client() as api:
        program = create_program_api(api)
        body = {
            "program_id": program["id"],
            "order_id": "o-1",
            "amount": "19.99",
            "currency": "EUR",
            **changes,
        }

        response = api.post("/api/v1/conversions", json=body)

        _assert_problem(response, status, code, field)
        assert _conversions(server, program["id"]) == 0


@pytest.mark.parametrize("missing", ["program_id", "order_id", "amount", "currency"])
def test_missing_field_is_named(server: Server, missing: str) -> None:
    with server.client() as api:
        program = create_program_api(api)
        body = {
            "program_id": program["id"],
            "order_id": "o-1",
            "amount": "19.99",
            "currency": "EUR",
        }
        del body[missing]

        response = api.post("/api/v1/conversions", json=body)

        _assert_problem(response, 422, "missing_field", missing)
        assert _conversions(server, program["id"]) == 0


def test_malformed_json_is_a_400(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)

        response = api.post(
            "/api/v1/conversions",
            content=b'{"program_id": "' + program["id"].encode() + b'", "order_id": ',
            headers={"content-type": "application/json"},
        )

        _assert_problem(response, 400, "malformed_json", None)
        assert _conversions(server, program["id"]) == 0


def test_body_that_is_not_an_object(server: Server) -> None:
    with server.client() as api:
        response = api.post("/api/v1/conversions", json=["not", "an", "object"])

        assert response.status_code == 422
        assert response.json()["code"] == "invalid_body"


def test_unknown_program_is_404(server: Server) -> None:
    with server.client() as api:
        response = api.post(
            "/api/v1/conversions",
            json={
                "program_id": "prg_01M86DA1PNNAJBWVBJCMRMY65N",
                "order_id": "o",
                "amount": "1.00",
                "currency": "EUR",
            },
        )

        _assert_problem(response, 404, "program_not_found", "program_id")


@pytest.mark.parametrize(
    "destination",
    [
        "https://evil.example/phish",
        "https://shop.example.com@evil.example/",
        "https://shop.example.com.evil.example/",
        "https://evilshop.example.com/",
        "javascript:alert(1)",
        "//evil.example/",
        "ftp://shop.example.com/file",
    ],
)
def test_deep_link_to_a_foreign_host_is_refused(server: Server, destination: str) -> None:
    with server.client() as api:
        program = create_program_api(api, allowed_domains=["shop.example.com"])
        affiliate = create_affiliate_api(api, program["id"])

        response = api.post(
            "/api/v1/links",
            json={
                "program_id": program["id"],
                "affiliate_id": affiliate["id"],
                "destination_url": destination,
            },
        )

        _assert_problem(response, 422, "destination_not_allowed", "destination_url")
        with server.runtime.sessions() as db:
            assert (
                db.scalar(
                    select(func.count()).select_from(Link).where(Link.program_id == program["id"])
                )
                == 0
            )


def test_deep_link_to_a_subdomain_is_allowed(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, allowed_domains=["shop.example.com"])
        affiliate = create_affiliate_api(api, program["id"])

        response = api.post(
            "/api/v1/links",
            json={
                "program_id": program["id"],
                "affiliate_id": affiliate["id"],
                "destination_url": "https://www.shop.example.com/sale?x=1",
            },
        )

        assert response.status_code == 201, response.text
        assert response.json()["destination_url"] == "https://www.shop.example.com/sale?x=1"


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"currency": "ZZZ"}, "unknown_currency", "currency"),
        ({"cookie_days": 0}, "invalid_cookie_days", "cookie_days"),
        ({"hold_days": -1}, "invalid_hold_days", "hold_days"),
        ({"allowed_domains": []}, "invalid_domain", "allowed_domains"),
        (
            {"allowed_domains": ["https://shop.example.com/"]},
            "invalid_domain",
            "allowed_domains[0]",
        ),
        (
            {"commission": {"type": "percentage", "value": "101"}},
            "invalid_rate",
            "commission.value",
        ),
        ({"commission": {"type": "fixed", "value": "5.001"}}, "invalid_amount", "commission.value"),
        ({"commission": {"type": "bonus", "value": "5"}}, "invalid_field", "commission.type"),
        ({"name": ""}, "invalid_name", "name"),
    ],
)
def test_bad_program_is_refused(
    server: Server, changes: dict[str, Any], code: str, field: str
) -> None:
    from tests.factories.programs import program_body

    with server.client() as api:
        before = len(api.get("/api/v1/programs").json()["items"])

        response = api.post("/api/v1/programs", json=program_body(**changes))

        _assert_problem(response, 422, code, field)
        assert len(api.get("/api/v1/programs").json()["items"]) == before


def test_bad_email_for_affiliate(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)

        response = api.post(
            "/api/v1/affiliates", json={"program_id": program["id"], "email": "nope", "name": "X"}
        )

        _assert_problem(response, 422, "invalid_email", "email")
        assert (
            api.get("/api/v1/affiliates", params={"program_id": program["id"]}).json()["items"]
            == []
        )


def test_links_need_an_approved_affiliate(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        pending = create_affiliate_api(api, program["id"], approve=False)

        response = api.post(
            "/api/v1/links",
            json={
                "program_id": program["id"],
                "affiliate_id": pending["id"],
                "destination_url": "https://shop.example.com/",
            },
        )

        _assert_problem(response, 409, "affiliate_not_approved", "affiliate_id")


def test_bad_cursor_and_limit(server: Server) -> None:
    with server.client() as api:
        assert (
            api.get("/api/v1/commissions", params={"cursor": "%%%"}).json()["code"]
            == "invalid_cursor"
        )
        response = api.get("/api/v1/commissions", params={"limit": 1000})
        _assert_problem(response, 422, "invalid_field", "limit")
        response = api.get("/api/v1/commissions", params={"state": "lost"})
        _assert_problem(response, 422, "invalid_state", "state")
        response = api.get("/api/v1/commissions", params={"from": "yesterday"})
        _assert_problem(response, 422, "invalid_date", "from")


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"click_id": "c" * 33}, "invalid_click_id", "click_id"),
        ({"coupon": "C" * 65}, "invalid_coupon", "coupon"),
        ({"customer_id": "x" * 256}, "invalid_customer_id", "customer_id"),
        ({"customer_email": "a@" + "b" * 300 + ".com"}, "invalid_email", "customer_email"),
        ({"customer_email": "no-at-sign"}, "invalid_email", "customer_email"),
    ],
)
def test_over_long_references_are_a_422_not_a_database_error(
    server: Server, changes: dict[str, Any], code: str, field: str
) -> None:
    # PostgreSQL enforces column widths (SQLite does not): both must answer the same 422.
    with server.client() as api:
        program = create_program_api(api)
        body = {"program_id": program["id"], "order_id": "o-1", "amount": "1.00", "currency": "EUR"}

        response = api.post("/api/v1/conversions", json={**body, **changes})
        postback = api.get(
            "/postback",
            params={
                "token": program["postback_token"],
                "order_id": "o-1",
                "amount": "1.00",
                **changes,
            },
        )

        _assert_problem(response, 422, code, field)
        _assert_problem(postback, 422, code, field)
        assert _conversions(server, program["id"]) == 0


def test_over_long_refund_id_is_a_422(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)

        response = api.post(
            "/api/v1/refunds",
            json={
                "program_id": program["id"],
                "order_id": "o",
                "amount": "1.00",
                "currency": "EUR",
                "refund_id": "r" * 256,
            },
        )

        _assert_problem(response, 422, "invalid_refund_id", "refund_id")


def test_postback_with_the_longest_order_id_is_stored(server: Server) -> None:
    # The inbox id is "conversion:" + the order id: it must fit a 255-character order id.
    with server.client() as api:
        program = create_program_api(api)

        response = api.get(
            "/postback",
            params={"token": program["postback_token"], "order_id": "o" * 255, "amount": "1.00"},
        )

        assert (response.status_code, response.json()["status"]) == (200, "accepted")
