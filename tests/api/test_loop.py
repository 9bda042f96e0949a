"""The whole loop over real HTTP: link -> click -> conversion -> commission -> stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, select

from partnerloop.commissions.models import Commission
from partnerloop.tracking.models import Click
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import BROWSER_UA, click, create_link_api


def test_click_to_commission_with_exact_amount(server: Server) -> None:
    # Given a program paying 10 % and an approved affiliate with a link
    with server.client() as api:
        program = create_program_api(api, commission={"type": "percentage", "value": "10"})
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(
            api,
            program["id"],
            affiliate["id"],
            destination="https://shop.example.com/p/1?color=red",
        )

        # When a shopper clicks the link
        response = api.get(
            f"/r/{link['code']}",
            params={"sub1": "newsletter", "utm_source": "mail"},
            headers={"User-Agent": BROWSER_UA, "Referer": "https://blog.example/post"},
        )

        # Then they are sent to the shop with the click id, and the click is already stored
        assert response.status_code == 302
        location = urlsplit(response.headers["location"])
        assert (location.scheme, location.netloc, location.path) == (
            "https",
            "shop.example.com",
            "/p/1",
        )
        query = parse_qs(location.query)
        assert query["color"] == ["red"]
        assert query["utm_source"] == ["mail"]
        assert "sub1" not in query
        click_id = query["plclid"][0]
        assert click_id.startswith("clk_")
        assert f"pl_{program['id']}={click_id}" in response.headers["set-cookie"]
        with server.runtime.sessions() as db:
            stored = db.get(Click, click_id)
            assert stored is not None
            assert (stored.link_id, stored.affiliate_id, stored.sub1) == (
                link["id"],
                affiliate["id"],
                "newsletter",
            )
            assert (stored.device, stored.browser, stored.is_bot, stored.is_unique) == (
                "desktop",
                "Chrome",
                False,
                True,
            )
            assert stored.referrer == "https://blog.example/post"

        # When the shop reports the order with that click id
        created = api.post(
            "/api/v1/conversions",
            json={
                "program_id": program["id"],
                "order_id": "order-1001",
                "amount": "123.45",
                "currency": "EUR",
                "click_id": click_id,
            },
        )

        # Then the order is the affiliate's and earns exactly 10 % (12.345 -> 12.34, half-even)
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["affiliate_id"], body["attribution"], body["click_id"]) == (
            affiliate["id"],
            "click",
            click_id,
        )
        assert [(c["amount"], c["currency"], c["state"]) for c in body["commissions"]] == [
            ("12.34", "EUR", "pending")
        ]

        listed = api.get("/api/v1/commissions", params={"program_id": program["id"]}).json()
        assert [
            (c["affiliate_id"], c["order_id"], c["amount"], c["state"]) for c in listed["items"]
        ] == [(affiliate["id"], "order-1001", "12.34", "pending")]
        stats = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert stats["clicks"] == 1
        assert stats["unique_clicks"] == 1
        assert stats["conversions"] == 1
        assert stats["revenue"] == "123.45"
        assert stats["commissions"] == {
            "pending": "12.34",
            "approved": "0.00",
            "paid": "0.00",
            "reversed": "0.00",
            "declined": "0.00",
        }


def test_click_outside_cookie_window_earns_nothing(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, cookie_days=7)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
        click_id = click(api, link["code"])
        eight_days_later = (datetime.now(UTC) + timedelta(days=8)).isoformat()

        response = api.post(
            "/api/v1/conversions",
            json={
                "program_id": program["id"],
                "order_id": "late-order",
                "amount": "50.00",
                "currency": "EUR",
                "click_id": click_id,
                "ordered_at": eight_days_later,
            },
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["affiliate_id"], body["attribution"], body["commissions"]) == (
            None,
            "none",
            [],
        )
        with server.runtime.sessions() as db:
            count = db.scalar(
                select(func.count())
                .select_from(Commission)
                .where(Commission.program_id == program["id"])
            )
        assert count == 0


def test_click_inside_window_at_its_last_day_still_counts(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, cookie_days=7)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
        click_id = click(api, link["code"])
        six_days_later = (datetime.now(UTC) + timedelta(days=6, hours=23)).isoformat()

        response = api.post(
            "/api/v1/conversions",
            json={
                "program_id": program["id"],
                "order_id": "o-1",
                "amount": "50.00",
                "currency": "EUR",
                "click_id": click_id,
                "ordered_at": six_days_later,
            },
        )

        assert response.json()["affiliate_id"] == affiliate["id"]
        assert [c["amount"] for c in response.json()["commissions"]] == ["5.00"]
