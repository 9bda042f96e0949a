"""The same order, however often and however concurrently reported, is one
conversion with one commission."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
from sqlalchemy import func, select

from partnerloop.analytics.models import DailyStats
from partnerloop.commissions.models import Commission
from partnerloop.orders.models import Conversion
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api


def _setup(api: httpx.Client) -> tuple[dict, dict, str]:
    program = create_program_api(api)
    affiliate = create_affiliate_api(api, program["id"])
    link = create_link_api(api, program["id"], affiliate["id"])
    return program, affiliate, click(api, link["code"])


def _counts(server: Server, program_id: str) -> tuple[int, int, int]:
    with server.runtime.sessions() as db:
        conversions = db.scalar(
            select(func.count()).select_from(Conversion).where(Conversion.program_id == program_id)
        )
        commissions = db.scalar(
            select(func.count()).select_from(Commission).where(Commission.program_id == program_id)
        )
        rolled_up = db.scalar(
            select(func.sum(DailyStats.conversions)).where(DailyStats.program_id == program_id)
        )
    return int(conversions or 0), int(commissions or 0), int(rolled_up or 0)


def test_replay_answers_200_with_the_same_body(server: Server) -> None:
    with server.client() as api:
        program, _, click_id = _setup(api)
        body = {
            "program_id": program["id"],
            "order_id": "A-1",
            "amount": "80.00",
            "currency": "EUR",
            "click_id": click_id,
        }
        first = api.post("/api/v1/conversions", json=body)

        second = api.post("/api/v1/conversions", json=body)

        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json() == first.json()
        assert _counts(server, program["id"]) == (1, 1, 1)


def test_replay_with_another_amount_is_a_conflict(server: Server) -> None:
    with server.client() as api:
        program, _, click_id = _setup(api)
        body = {
            "program_id": program["id"],
            "order_id": "A-2",
            "amount": "80.00",
            "currency": "EUR",
            "click_id": click_id,
        }
        assert api.post("/api/v1/conversions", json=body).status_code == 201

        response = api.post("/api/v1/conversions", json={**body, "amount": "90.00"})

        assert response.status_code == 409
        assert (response.json()["code"], response.json()["field"]) == ("order_conflict", "amount")
        assert _counts(server, program["id"]) == (1, 1, 1)


def test_same_order_id_in_two_programs_is_two_orders(server: Server) -> None:
    with server.client() as api:
        program_a, _, click_a = _setup(api)
        program_b, _, click_b = _setup(api)

        a = api.post(
            "/api/v1/conversions",
            json={
                "program_id": program_a["id"],
                "order_id": "same",
                "amount": "10.00",
                "currency": "EUR",
                "click_id": click_a,
            },
        )
        b = api.post(
            "/api/v1/conversions",
            json={
                "program_id": program_b["id"],
                "order_id": "same",
                "amount": "10.00",
                "currency": "EUR",
                "click_id": click_b,
            },
        )

        assert (a.status_code, b.status_code) == (201, 201)
        assert a.json()["id"] != b.json()["id"]


def test_twenty_concurrent_reports_make_one_conversion_and_one_commission(server: Server) -> None:
    # On PostgreSQL these really run at once (unique index + ON CONFLICT decide);
    # on SQLite the write lock serialises them. Both must end the same way.
    with server.client() as api:
        program, affiliate, click_id = _setup(api)
    body = {
        "program_id": program["id"],
        "order_id": "RACE-1",
        "amount": "49.90",
        "currency": "EUR",
        "click_id": click_id,
    }
    start = Barrier(20)

    def report(_: int) -> httpx.Response:
        with server.client() as client:
            start.wait()
            return client.post("/api/v1/conversions", json=body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(report, range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert {tuple((c["id"], c["amount"]) for c in r.json()["commissions"]) for r in responses} == {
        ((responses[0].json()["commissions"][0]["id"], "4.99"),)
    }
    assert _counts(server, program["id"]) == (1, 1, 1)
    with server.client() as api:
        stats = api.get(
            "/api/v1/stats", params={"program_id": program["id"], "affiliate_id": affiliate["id"]}
        ).json()
    assert (stats["conversions"], stats["revenue"], stats["commissions"]["pending"]) == (
        1,
        "49.90",
        "4.99",
    )
