"""The whole white-label path in a real browser, on the program's own domains:
an affiliate signs up on partners.<brand>, waits for approval, a manager
approves them in the admin pages, the affiliate builds a deep link, which is on
go.<brand>; a shopper follows it to the shop, and the affiliate sees the click.

Chromium resolves the brand's host names to the test server by a host-resolver
rule; nothing else about the browser is special."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from partnerloop.affiliates import service as affiliates
from partnerloop.core.db import transaction
from tests.affiliates.portal_support import PASSWORD, WEBSITE_FIELD, portal_program
from tests.conftest import Server
from tests.e2e.conftest import launch, screenshot
from tests.e2e.test_portal_browser import SHOP_HOST, shop  # noqa: F401 (the shop fixture)
from tests.factories.tracking import BROWSER_UA
from tests.support.staff import browser_login

BRAND = "brand-e2e.example"


@pytest.fixture(scope="module")
def brand_browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium that finds every *.brand-e2e.example at the loopback address."""
    launched = launch(playwright, f"--host-resolver-rules=MAP *.{BRAND} 127.0.0.1")
    yield launched
    launched.close()


def _clicks_become(page: Page, url: str, expected: str, *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    page.goto(url)
    while page.locator("#kpi-clicks").inner_text() != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        page.goto(url)
    expect(page.locator("#kpi-clicks")).to_have_text(expected)


def test_sign_up_on_the_brands_portal_get_approved_link_and_count_the_click(
    brand_browser: Browser,
    server: Server,
    shop: str,  # noqa: F811
) -> None:
    port = urlsplit(server.url).port
    tag = secrets.token_hex(3)
    portal_host, tracking_host = f"partners-{tag}.{BRAND}", f"go-{tag}.{BRAND}"
    program = portal_program(
        server,
        approval="manual",
        fields=[WEBSITE_FIELD],
        allowed_domains=[SHOP_HOST],
        portal_name="Brand Partners",
        brand_color="#14532d",
    )
    with server.client() as api:
        configured = api.patch(
            f"/api/v1/programs/{program['id']}/settings",
            json={"portal_domain": portal_host, "tracking_domain": tracking_host},
        )
    assert configured.status_code == 200, configured.text
    portal = f"http://{portal_host}:{port}"
    email = f"casey-{tag}@creators.example"

    affiliate = brand_browser.new_context(locale="en-US", user_agent=BROWSER_UA)
    staff = brand_browser.new_context(locale="en-US")
    page, admin = affiliate.new_page(), staff.new_page()
    try:
        # 1. Sign up on the brand's own portal, at its root.
        page.goto(f"{portal}/signup")
        expect(page).to_have_title("Become an affiliate · Brand Partners")
        page.get_by_label("Name").fill("Casey Creator")
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Your website").fill("https://casey.example")
        page.get_by_label("I accept the terms").check()
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("status")).to_contain_text("reviews your application")
        assert urlsplit(page.url).netloc == f"{portal_host}:{port}"  # never sent elsewhere
        screenshot(page, "custom-domain-pending")

        # 2. A manager approves the application in the admin pages.
        with transaction(server.runtime.sessions) as db:
            found = affiliates.find_by_email(db, server.runtime.cipher, email)
            assert found is not None
            affiliate_id = found.id
        browser_login(admin, server, "manager", program_id=program["id"])
        admin.goto(f"{server.url}/admin/affiliates?program={program['id']}")
        row = admin.locator(f"#affiliate-{affiliate_id}")
        expect(row.locator("td.status")).to_have_text("pending")
        row.get_by_role("button", name="Approve").click()
        expect(row.locator("td.status")).to_have_text("approved")

        # 3. Back on the portal: approved, the link builder opens; a deep link.
        page.goto(f"{portal}/links")
        page.get_by_label("Page to link to").fill(f"{shop}/summer/hats?colour=red")
        page.get_by_role("button", name="Create link").click()
        tracking_url = page.locator("#link-rows tr").first.get_by_role("textbox").input_value()
        parts = urlsplit(tracking_url)
        assert parts.hostname == tracking_host  # the brand's tracking domain
        screenshot(page, "custom-domain-links")

        # 4. A shopper follows it (the test server listens on its own port).
        page.goto(f"http://{tracking_host}:{port}{parts.path}")
        expect(page.get_by_role("heading", name="The shop")).to_be_visible()
        assert page.url.startswith(f"{shop}/summer/hats?colour=red&plclid=")

        # 5. The affiliate sees the click on the portal's dashboard.
        _clicks_become(page, f"{portal}/", "1")
        screenshot(page, "custom-domain-dashboard")
        # The brand's hosts serve nothing of the installation.
        assert page.goto(f"{portal}/admin/login").status == 404  # type: ignore[union-attr]
    finally:
        affiliate.close()
        staff.close()
