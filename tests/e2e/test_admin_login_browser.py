"""Staff login in a real browser (chromium): with and without two-factor, in
English and Dutch, with screenshots as test artifacts."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Browser, Page, expect

from partnerloop.access import staff, totp
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from tests.conftest import Server
from tests.e2e.conftest import screenshot

PASSWORD = "correct horse battery"


def account(server: Server, email: str, *, with_totp: bool = False) -> str | None:
    with transaction(server.runtime.sessions) as db:
        user = staff.create(
            db,
            server.runtime.cipher,
            staff.NewStaff(email=email, role="owner", password=PASSWORD),
            now=utcnow(),
        )
        if not with_totp:
            return None
        uri = staff.begin_totp(server.runtime.cipher, user, issuer="partnerloop")
        secret = parse_qs(urlsplit(uri).query)["secret"][0]
        earlier = utcnow() - timedelta(seconds=60)
        assert staff.confirm_totp(
            server.runtime.cipher, user, totp.code_at(secret, earlier), now=earlier
        )
        return secret


def sign_in(page: Page, server: Server, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{server.url}/admin/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_staff_sign_in_without_two_factor(page: Page, server: Server) -> None:
    account(server, "owner.browser@shop.example")

    sign_in(page, server, "owner.browser@shop.example", "wrong password!")
    expect(page.get_by_role("alert")).to_have_text("The e-mail or the password is wrong.")
    screenshot(page, "admin-login-failed-en")
    sign_in(page, server, "owner.browser@shop.example")

    expect(page).to_have_url(f"{server.url}/admin")
    expect(page.get_by_text("Signed in as owner.browser@shop.example (owner).")).to_be_visible()
    screenshot(page, "admin-home-en")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server.url}/admin/login")


def test_staff_sign_in_with_two_factor(page: Page, server: Server) -> None:
    secret = account(server, "totp.browser@shop.example", with_totp=True)
    assert secret is not None

    sign_in(page, server, "totp.browser@shop.example")
    expect(page).to_have_url(f"{server.url}/admin/login/code")
    screenshot(page, "admin-code-en")
    # The dashboard stays closed until the code is given.
    page.goto(f"{server.url}/admin")
    expect(page).to_have_url(f"{server.url}/admin/login/code")
    page.get_by_label("Code").fill(totp.code_at(secret, utcnow()))
    page.get_by_role("button", name="Verify").click()

    expect(page).to_have_url(f"{server.url}/admin")
    expect(page.get_by_text("Signed in as totp.browser@shop.example")).to_be_visible()


def test_the_login_page_in_dutch(browser: Browser, server: Server) -> None:
    account(server, "nl.browser@shop.example")
    context = browser.new_context(locale="nl-NL")
    page = context.new_page()
    try:
        page.goto(f"{server.url}/admin/login")
        expect(page.get_by_role("heading", name="Inloggen")).to_be_visible()
        screenshot(page, "admin-login-nl")
        page.get_by_label("E-mailadres").fill("nl.browser@shop.example")
        page.get_by_label("Wachtwoord").fill(PASSWORD)
        page.get_by_role("button", name="Inloggen").click()
        expect(page.get_by_text("Ingelogd als nl.browser@shop.example (eigenaar).")).to_be_visible()
        screenshot(page, "admin-home-nl")
    finally:
        context.close()
