"""Staff call the API with their page session: the same role matrix as the
pages, CSRF on every change, program binding, two-factor requirement, and an
audit entry for every change (API keys' changes too)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlalchemy import select

from partnerloop.audit.models import AuditEntry
from partnerloop.commissions.models import Commission
from partnerloop.core.db import transaction
from partnerloop.programs.models import Program
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.staff import signed_in_client


def _csrf(browser: httpx.Client) -> str:
    page = browser.get("/admin")
    assert page.status_code == 200, page.text
    marker = 'name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def _world(server: Server) -> dict[str, Any]:
    """A program with a pending affiliate, a pending commission and a webhook connector."""
    with server.client() as api:
        program = create_program_api(api, name=f"Staff API {secrets.token_hex(3)}")
        pending = create_affiliate_api(api, program["id"], approve=False)
        earner = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], earner["id"])
        click_id = click(api, link["code"])
        order = report_order(
            api, program["id"], f"o-{secrets.token_hex(4)}", "100.00", click_id=click_id
        )
        connector = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "webhook",
                "settings": {"url": "http://127.0.0.1:9/hook"},
            },
        )
        assert connector.status_code == 201, connector.text
    return {
        "program": program,
        "pending": pending,
        "commission": order["commissions"][0],
        "connector": connector.json(),
    }


def _affiliate_status(server: Server, affiliate_id: str) -> str:
    with server.client() as api:
        return str(api.get(f"/api/v1/affiliates/{affiliate_id}").json()["status"])


def _commission_state(server: Server, commission_id: str) -> str:
    with transaction(server.runtime.sessions) as db:
        return db.get_one(Commission, commission_id).state


def _entries(server: Server, subject_id: str) -> list[AuditEntry]:
    with transaction(server.runtime.sessions) as db:
        rows = list(
            db.scalars(
                select(AuditEntry)
                .where(AuditEntry.subject_id == subject_id)
                .order_by(AuditEntry.id)
            )
        )
        db.expunge_all()
        return rows


def test_an_analyst_reads_through_the_api_but_changes_nothing(server: Server) -> None:
    world = _world(server)
    affiliate_id = world["pending"]["id"]
    with signed_in_client(server, "analyst") as browser:
        token = _csrf(browser)
        listed = browser.get("/api/v1/affiliates", params={"program_id": world["program"]["id"]})
        approve = browser.post(
            f"/api/v1/affiliates/{affiliate_id}/approve", headers={"X-CSRF-Token": token}
        )
        decline = browser.post(
            f"/api/v1/commissions/{world['commission']['id']}/decline",
            headers={"X-CSRF-Token": token},
        )
    assert listed.status_code == 200
    assert affiliate_id in {item["id"] for item in listed.json()["items"]}
    assert (approve.status_code, approve.json()["code"]) == (403, "role_forbids")
    assert decline.status_code == 403
    assert _affiliate_status(server, affiliate_id) == "pending"
    assert _commission_state(server, world["commission"]["id"]) == "pending"
    # Only the signup by the API key; the refused approval left no trace.
    assert [(e.action, e.actor_kind) for e in _entries(server, affiliate_id)] == [
        ("affiliate.signed_up", "api_key")
    ]


def test_finance_reviews_commissions_but_cannot_touch_connectors(server: Server) -> None:
    world = _world(server)
    connector_id = world["connector"]["id"]
    commission_id = world["commission"]["id"]
    with signed_in_client(server, "finance") as browser:
        token = _csrf(browser)
        enable = browser.post(
            f"/api/v1/connectors/{connector_id}/enable", headers={"X-CSRF-Token": token}
        )
        rotate = browser.post(
            f"/api/v1/connectors/{connector_id}/secret",
            json={},
            headers={"X-CSRF-Token": token},
        )
        declined = browser.post(
            f"/api/v1/commissions/{commission_id}/decline",
            json={"reason": "Order cancelled by the shop"},
            headers={"X-CSRF-Token": token},
        )
    assert (enable.status_code, enable.json()["code"]) == (403, "role_forbids")
    assert rotate.status_code == 403
    assert declined.status_code == 200, declined.text
    assert declined.json()["state"] == "declined"
    assert declined.json()["decline_reason"] == "Order cancelled by the shop"
    entries = _entries(server, commission_id)
    assert [(e.action, e.actor_kind, e.program_id) for e in entries] == [
        ("commission.declined", "staff", world["program"]["id"])
    ]
    assert entries[0].details == {}  # free text stays on the commission, not in the log
    assert [e.action for e in _entries(server, connector_id)] == ["connector.created"]


def test_a_manager_manages_connectors_and_affiliates(server: Server) -> None:
    world = _world(server)
    with signed_in_client(server, "manager") as browser:
        token = _csrf(browser)
        enable = browser.post(
            f"/api/v1/connectors/{world['connector']['id']}/enable",
            headers={"X-CSRF-Token": token},
        )
        approve = browser.post(
            f"/api/v1/affiliates/{world['pending']['id']}/approve",
            headers={"X-CSRF-Token": token},
        )
        keys = browser.get("/api/v1/api-keys")
    assert enable.status_code == 200, enable.text
    assert approve.status_code == 200, approve.text
    assert keys.status_code == 403  # API keys are staff administration: owners only
    actions = [(e.action, e.actor_kind) for e in _entries(server, world["pending"]["id"])]
    assert ("affiliate.approved", "staff") in actions


def test_a_change_with_the_cookie_but_without_the_csrf_header_is_refused(server: Server) -> None:
    world = _world(server)
    affiliate_id = world["pending"]["id"]
    with signed_in_client(server, "owner") as browser:
        missing = browser.post(f"/api/v1/affiliates/{affiliate_id}/approve")
        wrong = browser.post(
            f"/api/v1/affiliates/{affiliate_id}/approve", headers={"X-CSRF-Token": "forged"}
        )
        read = browser.get(f"/api/v1/affiliates/{affiliate_id}")
    assert (missing.status_code, missing.json()["code"]) == (403, "csrf_failed")
    assert wrong.status_code == 403
    assert read.status_code == 200  # reads need no token
    assert _affiliate_status(server, affiliate_id) == "pending"


def test_staff_bound_to_a_program_never_see_another(server: Server) -> None:
    mine, other = _world(server), _world(server)
    with signed_in_client(server, "owner", program_id=mine["program"]["id"]) as browser:
        token = _csrf(browser)
        own = browser.get(f"/api/v1/affiliates/{mine['pending']['id']}")
        foreign = browser.get(f"/api/v1/affiliates/{other['pending']['id']}")
        foreign_program = browser.get(f"/api/v1/programs/{other['program']['id']}")
        foreign_approve = browser.post(
            f"/api/v1/commissions/{other['commission']['id']}/approve",
            headers={"X-CSRF-Token": token},
        )
        listed = browser.get("/api/v1/commissions")
    assert own.status_code == 200
    assert foreign.status_code == 404
    assert foreign_program.status_code == 404
    assert foreign_approve.status_code == 404
    assert _commission_state(server, other["commission"]["id"]) == "pending"
    assert {item["program_id"] for item in listed.json()["items"]} == {mine["program"]["id"]}


def test_without_a_session_the_api_asks_for_a_key(server: Server) -> None:
    with httpx.Client(base_url=server.url, cookies={"pl_session": "not-a-session"}) as stranger:
        answer = stranger.get("/api/v1/affiliates")
    assert (answer.status_code, answer.json()["code"]) == (401, "session_expired")


def test_a_program_that_requires_two_factor_refuses_staff_without_it(server: Server) -> None:
    world = _world(server)
    program_id = world["program"]["id"]
    with transaction(server.runtime.sessions) as db:
        db.get_one(Program, program_id).require_two_factor = True
    try:
        with signed_in_client(server, "analyst", program_id=program_id) as browser:
            page = browser.get("/admin")
            api = browser.get(f"/api/v1/affiliates/{world['pending']['id']}")
    finally:
        with transaction(server.runtime.sessions) as db:
            db.get_one(Program, program_id).require_two_factor = False
    assert (page.status_code, page.headers["location"]) == (
        303,
        "/admin/account/two-factor?required=1",
    )
    assert (api.status_code, api.json()["code"]) == (403, "two_factor_required")


def test_api_key_changes_are_audited_too(server: Server) -> None:
    world = _world(server)
    with server.client() as api:
        approved = api.post(f"/api/v1/affiliates/{world['pending']['id']}/approve")
    assert approved.status_code == 200
    entries = _entries(server, world["pending"]["id"])
    assert [e.action for e in entries] == ["affiliate.signed_up", "affiliate.approved"]
    assert {e.actor_kind for e in entries} == {"api_key"}
    assert all("@" not in str(e.details) for e in entries)  # no e-mails in the log
