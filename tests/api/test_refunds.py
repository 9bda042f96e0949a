"""Refunds reduce or reverse commissions, in any order relative to their order."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from partnerloop.orders.models import Refund
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api


def _program_with_click(api: httpx.Client, **program: object) -> tuple[dict, str]:
    created = create_program_api(api, **program)
    affiliate = create_affiliate_api(api, created["id"])
    link = create_link_api(api, created["id"], affiliate["id"])
    return created, click(api, link["code"])


def _order(api: httpx.Client, program_id: str, order_id: str, amount: str, click_id: str) -> dict:
    return report_order(api, program_id, order_id, amount, click_id=click_id)


def _refund(
    api: httpx.Client, program_id: str, order_id: str, amount: str, **extra: str
) -> httpx.Response:
    return api.post(
        "/api/v1/refunds",
        json={
            "program_id": program_id,
            "order_id": order_id,
            "amount": amount,
            "currency": "EUR",
            **extra,
        },
    )


def _commission(api: httpx.Client, program_id: str) -> dict:
    items = api.get("/api/v1/commissions", params={"program_id": program_id}).json()["items"]
    assert len(items) == 1
    return dict(items[0])


def test_partial_refund_reduces_the_commission_proportionally(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(
            api, commission={"type": "percentage", "value": "10"}
        )
        _order(api, program["id"], "P-1", "100.00", click_id)

        response = _refund(api, program["id"], "P-1", "25.00")

        assert response.status_code == 201, response.text
        assert response.json()["applied"] is True
        commission = _commission(api, program["id"])
        assert (commission["amount"], commission["original_amount"], commission["state"]) == (
            "7.50",
            "10.00",
            "pending",
        )
        stats = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert (
            stats["revenue"],
            stats["commissions"]["pending"],
            stats["commissions"]["reversed"],
        ) == ("75.00", "7.50", "2.50")


def test_fixed_commission_shrinks_by_the_refunded_share(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(api, commission={"type": "fixed", "value": "5.00"})
        _order(api, program["id"], "F-1", "30.00", click_id)

        _refund(api, program["id"], "F-1", "10.00")

        # 5.00 * 20/30 = 3.333... -> 3.33
        assert _commission(api, program["id"])["amount"] == "3.33"


def test_two_partial_refunds_then_the_rest_reverse_the_commission(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(api)
        _order(api, program["id"], "R-1", "60.00", click_id)

        assert _refund(api, program["id"], "R-1", "20.00").status_code == 201
        assert _refund(api, program["id"], "R-1", "20.00").status_code == 201
        assert _commission(api, program["id"])["amount"] == "2.00"
        assert _refund(api, program["id"], "R-1", "20.00").status_code == 201

        commission = _commission(api, program["id"])
        assert (commission["amount"], commission["state"]) == ("0.00", "reversed")
        conversion = api.get(f"/api/v1/conversions/{commission['conversion_id']}").json()
        assert conversion["refunded_amount"] == "60.00"
        stats = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert (
            stats["revenue"],
            stats["commissions"]["pending"],
            stats["commissions"]["reversed"],
        ) == ("0.00", "0.00", "6.00")


def test_refund_larger_than_the_order_is_refused_and_nothing_changes(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(api)
        _order(api, program["id"], "X-1", "40.00", click_id)
        assert _refund(api, program["id"], "X-1", "30.00").status_code == 201

        response = _refund(api, program["id"], "X-1", "10.01")

        assert response.status_code == 422
        assert (response.json()["code"], response.json()["field"]) == (
            "refund_exceeds_order",
            "amount",
        )
        assert _commission(api, program["id"])["amount"] == "1.00"
        with server.runtime.sessions() as db:
            assert (
                db.scalar(
                    select(func.count())
                    .select_from(Refund)
                    .where(Refund.program_id == program["id"])
                )
                == 1
            )


def test_refund_before_its_order_is_applied_when_the_order_arrives(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(api)

        early = _refund(api, program["id"], "EARLY-1", "50.00", refund_id="rf-1")
        assert early.status_code == 201
        assert (early.json()["applied"], early.json()["conversion_id"]) == (False, None)

        conversion = _order(api, program["id"], "EARLY-1", "200.00", click_id)

        assert conversion["refunded_amount"] == "50.00"
        assert [(c["amount"], c["original_amount"]) for c in conversion["commissions"]] == [
            ("15.00", "20.00")
        ]
        replay = _refund(api, program["id"], "EARLY-1", "50.00", refund_id="rf-1")
        assert (replay.status_code, replay.json()["applied"], replay.json()["conversion_id"]) == (
            200,
            True,
            conversion["id"],
        )


def test_full_refund_before_its_order_reverses_at_once(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(api)
        _refund(api, program["id"], "EARLY-2", "30.00")

        conversion = _order(api, program["id"], "EARLY-2", "30.00", click_id)

        assert [(c["amount"], c["state"]) for c in conversion["commissions"]] == [
            ("0.00", "reversed")
        ]


def test_refund_id_makes_a_retry_safe(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(api)
        _order(api, program["id"], "ID-1", "100.00", click_id)

        first = _refund(api, program["id"], "ID-1", "10.00", refund_id="shop-refund-9")
        second = _refund(api, program["id"], "ID-1", "10.00", refund_id="shop-refund-9")
        conflicting = _refund(api, program["id"], "ID-1", "20.00", refund_id="shop-refund-9")

        assert (first.status_code, second.status_code, conflicting.status_code) == (201, 200, 409)
        assert second.json()["id"] == first.json()["id"]
        assert conflicting.json()["code"] == "refund_conflict"
        assert _commission(api, program["id"])["amount"] == "9.00"


def test_refund_after_payout_becomes_a_clawback(server: Server) -> None:
    with server.client() as api:
        program, click_id = _program_with_click(api)
        conversion = _order(api, program["id"], "PAID-1", "100.00", click_id)
        commission_id = conversion["commissions"][0]["id"]
        assert (
            api.post(f"/api/v1/commissions/{commission_id}/approve").json()["state"] == "approved"
        )
        assert api.post(f"/api/v1/commissions/{commission_id}/mark-paid").json()["state"] == "paid"

        _refund(api, program["id"], "PAID-1", "40.00")

        commission = _commission(api, program["id"])
        assert (commission["state"], commission["amount"], commission["clawback_amount"]) == (
            "paid",
            "10.00",
            "4.00",
        )
        stats = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert (stats["commissions"]["paid"], stats["commissions"]["reversed"]) == ("10.00", "4.00")


def test_bad_refunds(server: Server) -> None:
    with server.client() as api:
        program, _ = _program_with_click(api)

        zero = _refund(api, program["id"], "Z-1", "0.00")
        negative = _refund(api, program["id"], "Z-1", "-1.00")
        foreign = api.post(
            "/api/v1/refunds",
            json={
                "program_id": program["id"],
                "order_id": "Z-1",
                "amount": "1.00",
                "currency": "GBP",
            },
        )

        assert [zero.json()["code"], negative.json()["code"], foreign.json()["code"]] == [
            "invalid_amount",
            "invalid_amount",
            "currency_mismatch",
        ]
        with server.runtime.sessions() as db:
            assert (
                db.scalar(
                    select(func.count())
                    .select_from(Refund)
                    .where(Refund.program_id == program["id"])
                )
                == 0
            )
