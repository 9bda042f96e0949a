"""Managing a program in a real browser (chromium): a manager approves a pending
affiliate with one click (HTMX swaps the row in place), finds the approval in
the audit log, and declines a commission with a reason; screenshots of the
affiliates page in English and Dutch."""

from __future__ import annotations

import secrets
from typing import Any

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from partnerloop.affiliates.models import Affiliate
from partnerloop.audit.models import AuditEntry
from partnerloop.commissions.models import Commission
from tests.conftest import Server
from tests.e2e.conftest import screenshot
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.staff import browser_login


def _world(server: Server) -> dict[str, Any]:
    with server.client() as api:
        program = create_program_api(api, name=f"Browser shop {secrets.token_hex(3)}")
        pending = create_affiliate_api(api, program["id"], approve=False, name="Petra Pending")
        earner = create_affiliate_api(api, program["id"], name="Erik Earner")
        link = create_link_api(api, program["id"], earner["id"])
        order = report_order(
            api,
            program["id"],
            f"B-{secrets.token_hex(3)}",
            "80.00",
            click_id=click(api, link["code"]),
        )
    return {"program": program, "pending": pending, "commission": order["commissions"][0]}


def test_a_manager_approves_an_affiliate_and_declines_a_commission(
    page: Page, server: Server
) -> None:
    world = _world(server)
    program, pending, commission = world["program"], world["pending"], world["commission"]
    email = browser_login(page, server, "manager", program_id=program["id"])

    page.get_by_role("link", name="Affiliates").click()
    expect(page.get_by_role("heading", name="Affiliates")).to_be_visible()
    row = page.locator(f"#affiliate-{pending['id']}")
    expect(row.locator("td.status")).to_have_text("pending")
    page.evaluate("window.notReloaded = true")
    row.get_by_role("button", name="Approve").click()

    expect(row.locator("td.status")).to_have_text("approved")
    expect(row.get_by_role("button", name="Suspend")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True  # swapped in place, no page load
    screenshot(page, "affiliates-en")
    with server.runtime.sessions() as db:
        assert db.get_one(Affiliate, pending["id"]).status == "approved"
        entries = list(
            db.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.subject_id == pending["id"], AuditEntry.actor_kind == "staff"
                )
            )
        )
    assert entries == ["affiliate.approved"]

    page.get_by_role("link", name="Audit log").click()
    entry = page.get_by_role("row").filter(has_text="affiliate.approved").filter(has_text=email)
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text(pending["id"])

    page.get_by_role("link", name="Commissions").click()
    line = page.locator(f"#commission-{commission['id']}")
    expect(line.locator("td.state")).to_have_text("pending")
    line.get_by_text("Decline…").click()
    line.get_by_label("Reason").fill("The customer returned the order.")
    line.get_by_role("button", name="Decline").click()

    expect(line.locator("td.state")).to_contain_text("declined")
    expect(line.locator(".reason")).to_have_text("The customer returned the order.")
    screenshot(page, "commissions-en")
    with server.runtime.sessions() as db:
        declined = db.get_one(Commission, commission["id"])
        assert (declined.state, declined.decline_reason) == (
            "declined",
            "The customer returned the order.",
        )


def test_a_refused_click_shows_why(page: Page, server: Server) -> None:
    world = _world(server)
    program = world["program"]
    browser_login(page, server, "manager", program_id=program["id"])
    page.goto(f"{server.url}/admin/commissions?program={program['id']}")
    line = page.locator(f"#commission-{world['commission']['id']}")
    # Meanwhile the commission was declined elsewhere (through the API).
    with server.client() as api:
        assert (
            api.post(f"/api/v1/commissions/{world['commission']['id']}/decline").status_code == 200
        )

    line.get_by_role("button", name="Approve").click()

    expect(page.locator("#flash [role=alert]")).to_contain_text("cannot become approved")
    with server.runtime.sessions() as db:
        assert db.get_one(Commission, world["commission"]["id"]).state == "declined"


def test_the_affiliates_page_in_dutch(browser: Browser, server: Server) -> None:
    world = _world(server)
    context = browser.new_context(locale="nl-NL")
    try:
        page = context.new_page()
        browser_login(page, server, "manager", program_id=world["program"]["id"])
        page.get_by_role("link", name="Affiliates").click()

        row = page.locator(f"#affiliate-{world['pending']['id']}")
        expect(row.locator("td.status")).to_have_text("in afwachting")
        expect(row.get_by_role("button", name="Goedkeuren")).to_be_visible()
        expect(page.get_by_role("button", name="Filteren")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "nl")
        screenshot(page, "affiliates-nl")
    finally:
        context.close()
