"""The affiliate portal in a real browser (chromium): an affiliate signs up on a
branded portal with the program's own question, lands on the dashboard,
builds a deep link (HTMX, no reload), follows it, and sees the click counted;
in English and in Dutch, with screenshots as test artifacts."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.affiliates.portal_support import PASSWORD, WEBSITE_FIELD, portal_program
from tests.conftest import Server
from tests.e2e.conftest import screenshot
from tests.factories.tracking import BROWSER_UA

SHOP_PAGE = b"<!doctype html><title>Shop</title><h1>The shop</h1>"
# Chromium sends *.localhost to the loopback address by itself (RFC 6761): the
# program's shop is a real little web server the redirect really reaches.
SHOP_HOST = "shop.localhost"


class _Shop(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(SHOP_PAGE)))
        self.end_headers()
        self.wfile.write(SHOP_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    """The merchant's website: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{SHOP_HOST}:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


def branded_program(server: Server) -> dict[str, str]:
    return portal_program(
        server,
        approval="auto",
        fields=[WEBSITE_FIELD],
        allowed_domains=[SHOP_HOST],
        portal_name="Brand Partners",
        brand_color="#7c2d12",
        accent_color="#0369a1",
        portal_texts={
            "welcome": {
                "en": "Welcome to the Brand partner program.",
                "nl": "Welkom bij het partnerprogramma van Brand.",
            },
            "terms": {
                "en": "Commission is paid monthly.",
                "nl": "Commissie wordt maandelijks betaald.",
            },
        },
    )


def clicks_shown(page: Page, url: str, expected: str, *, within: float = 5.0) -> None:
    """Reload the dashboard until the click count shows (clicks are committed
    before the redirect answers; this only allows for a slow machine)."""
    deadline = time.monotonic() + within
    page.goto(url)
    while page.locator("#kpi-clicks").inner_text() != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        page.goto(url)
    expect(page.locator("#kpi-clicks")).to_have_text(expected)


def test_an_affiliate_signs_up_builds_a_link_and_sees_its_click(
    browser: Browser, server: Server, shop: str
) -> None:
    program = branded_program(server)
    base = f"{server.url}/portal/{program['id']}"
    # Headless chromium says so in its user agent and counts as a bot (no unique
    # click); the shopper here uses an everyday Chrome.
    context = browser.new_context(locale="en-US", user_agent=BROWSER_UA)
    page = context.new_page()
    try:
        page.goto(f"{base}/signup")
        expect(page).to_have_title("Become an affiliate · Brand Partners")
        expect(page.get_by_text("Welcome to the Brand partner program.")).to_be_visible()
        expect(page.get_by_text("Commission is paid monthly.")).to_be_visible()
        page.get_by_label("Name").fill("Robin Reviewer")
        page.get_by_label("E-mail").fill(f"robin-{secrets.token_hex(4)}@reviews.example")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        # The program's own question is required: the page says which field.
        expect(page.get_by_role("alert")).to_contain_text("Please correct the marked fields")
        expect(page.get_by_text("Your website is required.")).to_be_visible()
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Your website").fill("https://robin-reviews.example")
        page.get_by_label("I accept the terms").check()
        screenshot(page, "portal-signup-en")
        page.get_by_role("button", name="Sign up").click()

        expect(page).to_have_url(f"{base}/")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.locator("#kpi-clicks")).to_have_text("0")

        page.get_by_role("link", name="Links").click()
        expect(page).to_have_url(f"{base}/links")
        page.get_by_label("Page to link to").fill(f"{shop}/spring/jackets")
        page.get_by_text("Sub-ids", exact=True).first.click()
        page.get_by_label("sub1").fill("review-post")
        page.get_by_role("button", name="Create link").click()
        row = page.locator("#link-rows tr").first
        expect(row).to_contain_text(f"{shop}/spring/jackets")
        expect(row).to_contain_text("sub1=review-post")
        expect(page.locator("#no-links")).to_have_count(0)
        expect(page.get_by_label("Page to link to")).to_have_value("")  # the form was reset
        expect(row.get_by_role("img")).to_have_attribute(
            "alt", f"QR code for {row.get_by_role('textbox').input_value()}"
        )
        tracking_url = row.get_by_role("textbox").input_value()
        screenshot(page, "portal-links-en")

        # The shopper's side: the tracking URL (served here by the test server).
        code = tracking_url.rsplit("/", 1)[1]
        assert tracking_url == f"{server.runtime.settings.public_url}/r/{code}"
        page.goto(f"{server.url}/r/{code}")
        expect(page.get_by_role("heading", name="The shop")).to_be_visible()
        assert page.url.startswith(f"{shop}/spring/jackets?")
        assert "plclid=" in page.url

        clicks_shown(page, f"{base}/", "1")
        expect(page.locator("#kpi-unique")).to_have_text("1")
        expect(page.locator("#per-day tbody tr")).to_have_count(1)
        screenshot(page, "portal-en")
    finally:
        context.close()


def test_the_portal_in_dutch(browser: Browser, server: Server, shop: str) -> None:
    program = branded_program(server)
    base = f"{server.url}/portal/{program['id']}"
    context = browser.new_context(locale="nl-NL", user_agent=BROWSER_UA)
    page = context.new_page()
    try:
        page.goto(f"{base}/signup")
        expect(page.get_by_role("heading", name="Word affiliate")).to_be_visible()
        expect(page.get_by_text("Welkom bij het partnerprogramma van Brand.")).to_be_visible()
        page.get_by_label("Naam").fill("Sam de Vries")
        page.get_by_label("E-mailadres").fill(f"sam-{secrets.token_hex(4)}@blog.example")
        page.get_by_label("Wachtwoord", exact=True).fill(PASSWORD)
        page.get_by_label("Je website").fill("https://sam.example")
        page.get_by_label("Ik ga akkoord").check()
        page.get_by_role("button", name="Aanmelden").click()

        expect(page).to_have_url(f"{base}/")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.get_by_text("Ingelogd als Sam de Vries")).to_be_visible()
        page.get_by_role("link", name="Links").click()
        page.get_by_label("Pagina om naar te linken").fill("https://elders.example/")
        page.get_by_role("button", name="Link maken").click()
        expect(page.locator("#link-error")).to_contain_text("hoort niet bij de website")
        page.get_by_label("Pagina om naar te linken").fill(f"{shop}/sale")
        page.get_by_role("button", name="Link maken").click()
        row = page.locator("#link-rows tr").first
        expect(row).to_contain_text(f"{shop}/sale")
        expect(page.locator("#link-error")).to_have_text("")
        code = row.get_by_role("textbox").input_value().rsplit("/", 1)[1]
        page.goto(f"{server.url}/r/{code}")
        expect(page.get_by_role("heading", name="The shop")).to_be_visible()

        clicks_shown(page, f"{base}/", "1")
        expect(page.get_by_text("Klikken", exact=True).first).to_be_visible()
        screenshot(page, "portal-nl")
        # The language is the affiliate's own choice once saved.
        page.get_by_label("Taal", exact=True).select_option("en")
        page.get_by_role("button", name="Wijzigen").click()
        expect(page.get_by_text("Signed in as Sam de Vries")).to_be_visible()
    finally:
        context.close()
