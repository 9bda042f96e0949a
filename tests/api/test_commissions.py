"""Commission rules, overrides, attribution by coupon and lifetime customer, and
the life of a commission: pending -> approved (by hand or after the hold) -> paid."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from partnerloop.commissions.models import Commission
from partnerloop.core.clock import utcnow
from partnerloop.sync.worker import Worker
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api


def _worker_at(server: Server, days_from_now: float) -> Worker:
    moment = utcnow() + timedelta(days=days_from_now)
    runtime = server.runtime
    return Worker(
        session_factory=runtime.sessions,
        cipher=runtime.cipher,
        registry=runtime.registry(),
        max_attempts=3,
        lease_seconds=30,
        poll_seconds=0.05,
        clock=lambda: moment,
    )


def test_fixed_commission_in_a_zero_decimal_currency(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(
            api, currency="JPY", commission={"type": "fixed", "value": "500"}
        )
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])

        body = api.post(
            "/api/v1/conversions",
            json={
                "program_id": program["id"],
                "order_id": "jp-1",
                "amount": "12000",
                "currency": "JPY",
                "click_id": click(api, link["code"]),
            },
        ).json()

        assert [(c["amount"], c["currency"]) for c in body["commissions"]] == [("500", "JPY")]
        assert body["amount"] == "12000"


def test_affiliate_override_beats_the_program_default(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, commission={"type": "percentage", "value": "10"})
        star = create_affiliate_api(api, program["id"])
        regular = create_affiliate_api(api, program["id"])
        override = api.put(
            f"/api/v1/affiliates/{star['id']}/commission",
            json={"program_id": program["id"], "type": "percentage", "value": "17.5"},
        )
        assert override.status_code == 200, override.text
        assert override.json()["commission"] == {"type": "percentage", "value": "17.5"}
        fixed = api.put(
            f"/api/v1/affiliates/{regular['id']}/commission",
            json={"program_id": program["id"], "type": "fixed", "value": "5"},
        )
        assert fixed.json()["commission"] == {"type": "fixed", "value": "5.00"}
        api.put(
            f"/api/v1/affiliates/{regular['id']}/commission",
            json={"program_id": program["id"], "type": None},
        )
        star_click = click(api, create_link_api(api, program["id"], star["id"])["code"])
        regular_click = click(api, create_link_api(api, program["id"], regular["id"])["code"])

        star_order = report_order(api, program["id"], "s-1", "99.99", click_id=star_click)
        regular_order = report_order(api, program["id"], "r-1", "99.99", click_id=regular_click)

        # 17.5 % of 99.99 = 17.49825 -> 17.50; 10 % = 9.999 -> 10.00
        assert [c["amount"] for c in star_order["commissions"]] == ["17.50"]
        assert [c["amount"] for c in regular_order["commissions"]] == ["10.00"]
        assert star_order["commissions"][0]["rule"] == {"type": "percentage", "value": "17.5"}

        cleared = api.put(
            f"/api/v1/affiliates/{star['id']}/commission",
            json={"program_id": program["id"], "type": None},
        )
        assert cleared.json()["commission"] is None
        later = report_order(api, program["id"], "s-2", "99.99", click_id=star_click)
        assert [c["amount"] for c in later["commissions"]] == ["10.00"]


def test_coupon_attributes_when_there_is_no_click(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        podcaster = create_affiliate_api(api, program["id"])
        coupon = api.post(
            "/api/v1/coupons",
            json={"program_id": program["id"], "affiliate_id": podcaster["id"], "code": "Pod10"},
        )
        assert (coupon.status_code, coupon.json()["code"]) == (201, "POD10")
        duplicate = api.post(
            "/api/v1/coupons",
            json={"program_id": program["id"], "affiliate_id": podcaster["id"], "code": "pod10"},
        )
        assert (duplicate.status_code, duplicate.json()["code"]) == (409, "coupon_taken")

        body = report_order(api, program["id"], "c-1", "40.00", coupon="pod10")
        unknown = report_order(api, program["id"], "c-2", "40.00", coupon="NOPE")

        assert (
            body["affiliate_id"],
            body["attribution"],
            [c["amount"] for c in body["commissions"]],
        ) == (podcaster["id"], "coupon", ["4.00"])
        assert (unknown["affiliate_id"], unknown["attribution"]) == (None, "none")


def test_click_wins_over_coupon_and_returning_customer_stays_with_first_affiliate(
    server: Server,
) -> None:
    with server.client() as api:
        program = create_program_api(api)
        first = create_affiliate_api(api, program["id"])
        second = create_affiliate_api(api, program["id"])
        api.post(
            "/api/v1/coupons",
            json={"program_id": program["id"], "affiliate_id": second["id"], "code": "SECOND"},
        )
        first_click = click(api, create_link_api(api, program["id"], first["id"])["code"])

        one = report_order(
            api,
            program["id"],
            "l-1",
            "10.00",
            click_id=first_click,
            coupon="SECOND",
            customer_email="Loyal@Example.com",
        )
        two = report_order(api, program["id"], "l-2", "20.00", customer_email="loyal@example.com")
        three = report_order(
            api, program["id"], "l-3", "30.00", customer_email="loyal@example.com", coupon="SECOND"
        )

        assert (one["affiliate_id"], one["attribution"]) == (first["id"], "click")
        assert (two["affiliate_id"], two["attribution"]) == (first["id"], "customer")
        # A coupon is stronger evidence than an old binding; the binding itself does not move.
        assert (three["affiliate_id"], three["attribution"]) == (second["id"], "coupon")
        four = report_order(api, program["id"], "l-4", "40.00", customer_email="loyal@example.com")
        assert (four["affiliate_id"], four["attribution"]) == (first["id"], "customer")


def test_click_of_another_program_is_no_evidence(server: Server) -> None:
    with server.client() as api:
        program_a = create_program_api(api)
        program_b = create_program_api(api)
        affiliate = create_affiliate_api(api, program_a["id"])
        click_a = click(api, create_link_api(api, program_a["id"], affiliate["id"])["code"])

        body = report_order(api, program_b["id"], "x-1", "10.00", click_id=click_a)

        assert (body["affiliate_id"], body["commissions"]) == (None, [])


def test_suspended_affiliate_is_attributed_but_earns_nothing(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(api, program["id"])
        click_id = click(api, create_link_api(api, program["id"], affiliate["id"])["code"])
        api.post(f"/api/v1/affiliates/{affiliate['id']}/suspend").raise_for_status()

        body = report_order(api, program["id"], "sus-1", "10.00", click_id=click_id)

        assert (body["affiliate_id"], body["attribution"], body["commissions"]) == (
            affiliate["id"],
            "click",
            [],
        )


def test_manual_transitions_move_the_stats(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
        a = report_order(api, program["id"], "t-1", "100.00", click_id=click(api, link["code"]))[
            "commissions"
        ][0]["id"]
        b = report_order(api, program["id"], "t-2", "50.00", click_id=click(api, link["code"]))[
            "commissions"
        ][0]["id"]

        assert api.post(f"/api/v1/commissions/{a}/approve").json()["state"] == "approved"
        assert (
            api.post(f"/api/v1/commissions/{a}/approve").json()["state"] == "approved"
        )  # harmless retry
        assert api.post(f"/api/v1/commissions/{a}/mark-paid").json()["state"] == "paid"
        assert api.post(f"/api/v1/commissions/{b}/decline").json()["state"] == "declined"
        refused = api.post(f"/api/v1/commissions/{b}/approve")
        refused_paid = api.post(f"/api/v1/commissions/{a}/decline")

        assert (refused.status_code, refused.json()["code"]) == (409, "invalid_transition")
        assert refused_paid.status_code == 409
        stats = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert stats["commissions"] == {
            "pending": "0.00",
            "approved": "0.00",
            "paid": "10.00",
            "reversed": "0.00",
            "declined": "5.00",
        }
        listed = api.get(
            "/api/v1/commissions", params={"program_id": program["id"], "state": "paid"}
        ).json()["items"]
        assert [c["id"] for c in listed] == [a]


def test_commissions_are_approved_automatically_after_the_hold_period(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, hold_days=30)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
        commission_id = report_order(
            api, program["id"], "h-1", "80.00", click_id=click(api, link["code"])
        )["commissions"][0]["id"]

        _worker_at(server, days_from_now=29).run_once()
        with server.runtime.sessions() as db:
            assert db.get_one(Commission, commission_id).state == "pending"

        _worker_at(server, days_from_now=30.01).run_once()

        with server.runtime.sessions() as db:
            commission = db.get_one(Commission, commission_id)
            assert commission.state == "approved"
            assert commission.approved_at is not None
        stats = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert (stats["commissions"]["pending"], stats["commissions"]["approved"]) == (
            "0.00",
            "8.00",
        )
        # Running the sweep again moves nothing twice.
        _worker_at(server, days_from_now=31).run_once()
        again = api.get("/api/v1/stats", params={"program_id": program["id"]}).json()
        assert again["commissions"] == stats["commissions"]


def test_commission_filters_and_pagination(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        ann = create_affiliate_api(api, program["id"])
        bob = create_affiliate_api(api, program["id"])
        ann_link = create_link_api(api, program["id"], ann["id"])
        bob_link = create_link_api(api, program["id"], bob["id"])
        for n in range(5):
            report_order(
                api, program["id"], f"ann-{n}", "10.00", click_id=click(api, ann_link["code"])
            )
        report_order(api, program["id"], "bob-1", "10.00", click_id=click(api, bob_link["code"]))

        pages, cursor = [], None
        while True:
            params = {"program_id": program["id"], "affiliate_id": ann["id"], "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = api.get("/api/v1/commissions", params=params).json()
            pages.append([c["order_id"] for c in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break

        assert pages == [["ann-0", "ann-1"], ["ann-2", "ann-3"], ["ann-4"]]
        today = utcnow().date().isoformat()
        assert (
            len(
                api.get(
                    "/api/v1/commissions",
                    params={"program_id": program["id"], "from": today, "to": today},
                ).json()["items"]
            )
            == 6
        )
        tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
        assert (
            api.get(
                "/api/v1/commissions", params={"program_id": program["id"], "from": tomorrow}
            ).json()["items"]
            == []
        )
        with server.runtime.sessions() as db:
            assert (
                len(
                    list(
                        db.scalars(
                            select(Commission.id).where(Commission.affiliate_id == bob["id"])
                        )
                    )
                )
                == 1
            )
