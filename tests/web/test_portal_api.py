"""The portal's JSON API and what affiliates see of their money, over real HTTP:
each affiliate sees exactly their own data in their own program."""

from __future__ import annotations

import re

import httpx

from tests.affiliates.portal_support import api_csrf, browser, portal_program, signed_up
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.tracking import BROWSER_UA, create_link_api

PROBLEM = "application/problem+json"


def sale_through(server: Server, api: httpx.Client, program_id: str, code: str, amount: str) -> str:
    """A shopper clicks the link and buys: returns the commission's id."""
    with browser(server) as shopper:
        clicked = shopper.get(f"/r/{code}", headers={"User-Agent": BROWSER_UA})
    assert clicked.status_code == 302
    click_id = re.search(r"plclid=([^&]+)", clicked.headers["location"])
    assert click_id
    order = report_order(
        api, program_id, f"order-{click_id.group(1)}", amount, click_id=click_id.group(1)
    )
    listed = api.get("/api/v1/commissions", params={"program_id": program_id, "limit": 200})
    (commission,) = [c for c in listed.json()["items"] if c["conversion_id"] == order["id"]]
    return str(commission["id"])


def test_an_affiliate_follows_their_money_on_the_dashboard_payouts_and_api(
    server: Server,
) -> None:
    program = portal_program(server)
    pid = program["id"]
    with server.client() as api, signed_up(server, pid) as (client, _):
        csrf = api_csrf(client, pid)
        link = client.post(
            f"/portal/{pid}/api/links",
            json={"destination_url": "https://shop.example.com/deal", "sub1": "api"},
            headers={"X-CSRF-Token": csrf},
        )
        code = link.json()["code"]
        paid = sale_through(server, api, pid, code, "100.00")  # 10.00 commission
        declined = sale_through(server, api, pid, code, "50.00")  # 5.00
        sale_through(server, api, pid, code, "25.50")  # 2.55, stays pending
        assert api.post(f"/api/v1/commissions/{paid}/approve").status_code == 200
        assert api.post(f"/api/v1/commissions/{paid}/mark-paid").status_code == 200
        assert (
            api.post(
                f"/api/v1/commissions/{declined}/decline", json={"reason": "Order was returned"}
            ).status_code
            == 200
        )
        dashboard = client.get(f"/portal/{pid}/")
        payouts = client.get(f"/portal/{pid}/payouts")
        stats = client.get(f"/portal/{pid}/api/stats")
        commissions = client.get(f"/portal/{pid}/api/commissions")
        paid_only = client.get(f"/portal/{pid}/api/commissions", params={"state": "paid"})

    assert link.status_code == 201
    assert link.json()["subs"] == {"sub1": "api"}
    assert link.json()["url"] == f"{server.runtime.settings.public_url}/r/{code}"
    assert re.search(r'id="kpi-clicks">3<', dashboard.text)
    assert re.search(r'id="kpi-conversions">3<', dashboard.text)
    assert re.search(r'id="kpi-paid">10.00\xa0EUR<', dashboard.text)
    assert re.search(r'id="state-pending">2.55\xa0EUR<', dashboard.text)
    assert re.search(r'id="state-approved">0.00\xa0EUR<', dashboard.text)
    assert re.search(r'id="state-declined">5.00\xa0EUR<', dashboard.text)
    assert "Order was returned" in dashboard.text
    assert "Paid to you in total: 10.00\xa0EUR." in payouts.text
    assert payouts.text.count("10.00\xa0EUR</td>") == 1
    assert stats.status_code == 200
    body = stats.json()
    assert (body["clicks"], body["unique_clicks"], body["conversions"]) == (3, 3, 3)
    assert body["commissions"] == {
        "pending": "2.55",
        "approved": "0.00",
        "paid": "10.00",
        "reversed": "0.00",
        "declined": "5.00",
    }
    assert body["currency"] == "EUR"
    items = commissions.json()["items"]
    assert sorted((c["state"], c["amount"], c["decline_reason"]) for c in items) == [
        ("declined", "5.00", "Order was returned"),
        ("paid", "10.00", None),
        ("pending", "2.55", None),
    ]
    assert [c["id"] for c in paid_only.json()["items"]] == [paid]


def test_the_api_shows_each_affiliate_only_their_own(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with (
        server.client() as api,
        signed_up(server, pid) as (alice, alice_email),
        signed_up(server, pid) as (bob, _),
    ):
        bobs_link = bob.post(
            f"/portal/{pid}/api/links",
            json={"destination_url": "https://shop.example.com/bob"},
            headers={"X-CSRF-Token": api_csrf(bob, pid)},
        ).json()
        carol = create_affiliate_api(api, pid)
        carols_link = create_link_api(api, pid, carol["id"])
        alices_link = alice.post(
            f"/portal/{pid}/api/links",
            json={"destination_url": "https://shop.example.com/alice"},
            headers={"X-CSRF-Token": api_csrf(alice, pid)},
        ).json()
        me = alice.get(f"/portal/{pid}/api/me")
        links = alice.get(f"/portal/{pid}/api/links")
        qr_of_bob = alice.get(f"/portal/{pid}/links/{bobs_link['id']}/qr.svg")
        page = alice.get(f"/portal/{pid}/links")
        # Naming someone else does nothing: the affiliate is always the session's.
        smuggled = alice.post(
            f"/portal/{pid}/api/links",
            json={"destination_url": "https://shop.example.com/x", "affiliate_id": carol["id"]},
            headers={"X-CSRF-Token": api_csrf(alice, pid)},
        )
        bobs_commissions = alice.get(
            f"/portal/{pid}/api/commissions", params={"affiliate_id": carol["id"]}
        )

    assert me.json()["email"] == alice_email
    assert [item["id"] for item in links.json()["items"]] == [alices_link["id"]]
    assert qr_of_bob.status_code == 404
    assert bobs_link["code"] not in page.text
    assert carols_link["code"] not in page.text
    assert alices_link["code"] in page.text
    assert smuggled.status_code == 422  # an unknown field, refused
    assert bobs_commissions.json()["items"] == []


def test_the_api_without_a_session_or_token(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with browser(server) as anonymous:
        answers = [
            anonymous.get(f"/portal/{pid}/api/me"),
            anonymous.get(f"/portal/{pid}/api/stats"),
            anonymous.get(f"/portal/{pid}/api/links"),
            anonymous.get(f"/portal/{pid}/api/commissions"),
            anonymous.post(
                f"/portal/{pid}/api/links", json={"destination_url": "https://shop.example.com/"}
            ),
        ]
    with signed_up(server, pid) as (client, _):
        no_token = client.post(
            f"/portal/{pid}/api/links", json={"destination_url": "https://shop.example.com/"}
        )
        wrong_token = client.post(
            f"/portal/{pid}/api/links",
            json={"destination_url": "https://shop.example.com/"},
            headers={"X-CSRF-Token": "guess"},
        )
        outside = client.post(
            f"/portal/{pid}/api/links",
            json={"destination_url": "https://elsewhere.example/"},
            headers={"X-CSRF-Token": api_csrf(client, pid)},
        )
        bad_period = client.get(f"/portal/{pid}/api/stats", params={"from": "2024-13-01"})
        links = client.get(f"/portal/{pid}/api/links")

    assert [answer.status_code for answer in answers] == [401, 401, 401, 401, 401]
    for answer in answers:
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json()["code"] == "portal_session_required"
    assert no_token.status_code == wrong_token.status_code == 403
    assert no_token.json()["code"] == "csrf_failed"
    assert outside.status_code == 422
    assert outside.json()["code"] == "destination_not_allowed"
    assert outside.json()["field"] == "destination_url"
    assert bad_period.status_code == 422
    assert bad_period.json()["code"] == "invalid_date"
    assert links.json()["items"] == []
