"""S2S postbacks: token-authenticated, validated at the edge, stored in the inbox,
processed by the worker exactly once."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from partnerloop.orders.models import Conversion
from partnerloop.sync.models import InboundEvent
from tests.conftest import Server, drain
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api


def _setup(api: httpx.Client) -> tuple[dict, dict, str]:
    program = create_program_api(api)
    affiliate = create_affiliate_api(api, program["id"])
    link = create_link_api(api, program["id"], affiliate["id"])
    return program, affiliate, click(api, link["code"])


def _events(server: Server, program_id: str) -> list[InboundEvent]:
    with server.runtime.sessions() as db:
        return list(
            db.scalars(
                select(InboundEvent)
                .where(InboundEvent.program_id == program_id)
                .order_by(InboundEvent.id)
            )
        )


def test_get_postback_becomes_a_conversion_once(server: Server) -> None:
    with server.client() as api:
        program, affiliate, click_id = _setup(api)
        params = {
            "token": program["postback_token"],
            "order_id": "APP-1",
            "amount": "30.00",
            "plclid": click_id,
        }

        first = api.get("/postback", params=params)
        again = api.get("/postback", params=params)

        assert (first.status_code, first.json()["status"]) == (200, "accepted")
        assert (again.status_code, again.json()["status"], again.json()["event_id"]) == (
            200,
            "duplicate",
            first.json()["event_id"],
        )
        drain(server.runtime)
        [event] = _events(server, program["id"])
        assert (event.state, event.attempts, event.topic) == ("processed", 1, "conversion")
        conversions = api.get("/api/v1/conversions", params={"program_id": program["id"]}).json()[
            "items"
        ]
        assert [
            (c["order_id"], c["source"], c["affiliate_id"], c["attribution"]) for c in conversions
        ] == [("APP-1", "postback", affiliate["id"], "click")]
        assert [c["amount"] for c in conversions[0]["commissions"]] == ["3.00"]


def test_post_form_and_json_and_header_token(server: Server) -> None:
    with server.client() as api:
        program, _, click_id = _setup(api)
        token = program["postback_token"]

        form = api.post(
            "/postback",
            data={"token": token, "order_id": "F-1", "amount": "10.00", "click_id": click_id},
        )
        json_body = api.post(
            "/postback",
            json={"order_id": "J-1", "amount": "20.00", "currency": "EUR"},
            headers={"X-Postback-Token": token},
        )

        assert [form.status_code, json_body.status_code] == [200, 200]
        drain(server.runtime)
        orders = sorted(
            c["order_id"]
            for c in api.get("/api/v1/conversions", params={"program_id": program["id"]}).json()[
                "items"
            ]
        )
        assert orders == ["F-1", "J-1"]


def test_bad_token_or_bad_postback_is_refused_and_nothing_stored(server: Server) -> None:
    with server.client() as api:
        program, _, _ = _setup(api)
        token = program["postback_token"]

        no_token = api.get("/postback", params={"order_id": "x", "amount": "1.00"})
        wrong_token = api.get(
            "/postback", params={"token": "nope", "order_id": "x", "amount": "1.00"}
        )
        no_order = api.get("/postback", params={"token": token, "amount": "1.00"})
        bad_amount = api.get(
            "/postback", params={"token": token, "order_id": "x", "amount": "1.234"}
        )
        bad_currency = api.get(
            "/postback",
            params={"token": token, "order_id": "x", "amount": "1.00", "currency": "USD"},
        )
        refund_without_id = api.get(
            "/postback",
            params={"token": token, "order_id": "x", "amount": "1.00", "event": "refund"},
        )
        bad_json = api.post(
            "/postback",
            content=b"{oops",
            headers={"content-type": "application/json", "X-Postback-Token": token},
        )

        assert [(r.status_code, r.json()["code"]) for r in (no_token, wrong_token)] == [
            (401, "missing_postback_token"),
            (401, "invalid_postback_token"),
        ]
        assert [
            (r.json()["code"], r.json().get("field"))
            for r in (no_order, bad_amount, bad_currency, refund_without_id)
        ] == [
            ("missing_field", "order_id"),
            ("invalid_amount", "amount"),
            ("currency_mismatch", "currency"),
            ("missing_field", "refund_id"),
        ]
        assert (bad_json.status_code, bad_json.json()["code"]) == (422, "malformed_json")
        assert _events(server, program["id"]) == []


def test_refund_postback_and_a_rejected_one_that_can_be_replayed(server: Server) -> None:
    with server.client() as api:
        program, _, click_id = _setup(api)
        token = program["postback_token"]
        api.get(
            "/postback",
            params={"token": token, "order_id": "RP-1", "amount": "50.00", "click_id": click_id},
        )
        api.get(
            "/postback",
            params={
                "token": token,
                "order_id": "RP-1",
                "amount": "20.00",
                "event": "refund",
                "refund_id": "r1",
            },
        )
        too_much = api.get(
            "/postback",
            params={
                "token": token,
                "order_id": "RP-1",
                "amount": "40.00",
                "event": "refund",
                "refund_id": "r2",
            },
        )

        drain(server.runtime)

        states = {e.external_id: (e.state, e.last_error) for e in _events(server, program["id"])}
        assert states["conversion:RP-1"] == ("processed", None)
        assert states["refund:r1"] == ("processed", None)
        state, reason = states["refund:r2"]
        assert state == "rejected"
        assert (reason or "").startswith("refund_exceeds_order")
        [conversion] = api.get("/api/v1/conversions", params={"program_id": program["id"]}).json()[
            "items"
        ]
        assert (conversion["refunded_amount"], conversion["commissions"][0]["amount"]) == (
            "20.00",
            "3.00",
        )

        listed = api.get(
            "/api/v1/inbound-events", params={"program_id": program["id"], "state": "rejected"}
        ).json()
        assert [e["id"] for e in listed["items"]] == [too_much.json()["event_id"]]
        replayed = api.post(f"/api/v1/inbound-events/{too_much.json()['event_id']}/replay")
        assert (replayed.status_code, replayed.json()["state"], replayed.json()["attempts"]) == (
            200,
            "pending",
            0,
        )
        assert (
            api.post(f"/api/v1/inbound-events/{too_much.json()['event_id']}/replay").status_code
            == 409
        )


def test_rotated_token_replaces_the_old_one(server: Server) -> None:
    with server.client() as api:
        program, _, _ = _setup(api)
        old = program["postback_token"]

        new = api.post(f"/api/v1/programs/{program['id']}/postback-token").json()["postback_token"]

        assert new != old
        assert (
            api.get(
                "/postback", params={"token": old, "order_id": "a", "amount": "1.00"}
            ).status_code
            == 401
        )
        assert (
            api.get(
                "/postback", params={"token": new, "order_id": "a", "amount": "1.00"}
            ).status_code
            == 200
        )


def test_postback_with_unknown_click_is_unattributed(server: Server) -> None:
    with server.client() as api:
        program, _, _ = _setup(api)
        api.get(
            "/postback",
            params={
                "token": program["postback_token"],
                "order_id": "U-1",
                "amount": "9.00",
                "click_id": "clk_nope",
            },
        )

        drain(server.runtime)

        with server.runtime.sessions() as db:
            conversion = db.scalars(
                select(Conversion).where(Conversion.program_id == program["id"])
            ).one()
            assert (conversion.attribution, conversion.affiliate_id) == ("none", None)
            assert (
                db.scalar(
                    select(func.count())
                    .select_from(InboundEvent)
                    .where(InboundEvent.program_id == program["id"])
                )
                == 1
            )
