"""Staff login over real HTTP: CSRF on every form, throttling, two-factor,
session cookies, logout, in English and Dutch."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx

from partnerloop.access import staff, totp
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from tests.conftest import Server

PASSWORD = "correct horse battery"


def staff_user(server: Server, email: str, *, with_totp: bool = False) -> str | None:
    """Creates the account; returns its TOTP secret when two-factor is on."""
    with transaction(server.runtime.sessions) as db:
        user = staff.create(
            db,
            server.runtime.cipher,
            staff.NewStaff(email=email, role="finance", password=PASSWORD),
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


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert match, page.text
    return match.group(1)


def login(browser: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    form = browser.get("/admin/login")
    return browser.post(
        "/admin/login", data={"email": email, "password": password, "csrf": csrf_of(form)}
    )


def test_a_staff_member_signs_in_sees_the_dashboard_and_signs_out(server: Server) -> None:
    staff_user(server, "ada.web@shop.example")
    with server.client() as browser:
        form = browser.get("/admin/login")
        signed_in = login(browser, "Ada.Web@Shop.Example")
        cookie = signed_in.headers["set-cookie"]
        home = browser.get("/admin")
        logout = browser.post("/admin/logout", data={"csrf": csrf_of(home)})
        after = browser.get("/admin")

    assert form.status_code == 200
    assert form.headers["cache-control"] == "no-store"
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/admin")
    assert "pl_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/;" in cookie or cookie.endswith("Path=/")
    assert home.status_code == 200
    assert "Signed in as ada.web@shop.example (finance)." in home.text
    assert (logout.status_code, logout.headers["location"]) == (303, "/admin/login")
    assert (after.status_code, after.headers["location"]) == (303, "/admin/login")


def test_pages_speak_dutch_to_a_dutch_browser(server: Server) -> None:
    staff_user(server, "dutch.web@shop.example")
    with server.client() as browser:
        browser.headers["Accept-Language"] = "nl-NL,nl;q=0.9,en;q=0.8"
        form = browser.get("/admin/login")
        wrong = login(browser, "dutch.web@shop.example", "wrong password!")
        login(browser, "dutch.web@shop.example")
        home = browser.get("/admin")

    assert '<html lang="nl">' in form.text
    assert "Inloggen" in form.text
    assert "Het e-mailadres of het wachtwoord klopt niet." in wrong.text
    assert "Ingelogd als dutch.web@shop.example (financiën)." in home.text


def test_a_login_post_without_the_forms_token_is_refused_and_signs_nobody_in(
    server: Server,
) -> None:
    staff_user(server, "csrf.web@shop.example")
    with server.client() as browser:
        browser.get("/admin/login")  # the token cookie is set, but the form field is missing
        forged = browser.post(
            "/admin/login",
            data={"email": "csrf.web@shop.example", "password": PASSWORD, "csrf": "guess"},
        )
        home = browser.get("/admin")

    assert forged.status_code == 403
    assert "pl_session" not in forged.headers.get("set-cookie", "")
    assert home.status_code == 303


def test_a_logout_post_without_the_sessions_token_changes_nothing(server: Server) -> None:
    staff_user(server, "logout.web@shop.example")
    with server.client() as browser:
        login(browser, "logout.web@shop.example")
        forged = browser.post("/admin/logout", data={"csrf": "guess"})
        home = browser.get("/admin")

    assert forged.status_code == 403
    assert home.status_code == 200  # still signed in


def test_the_same_answer_for_a_wrong_password_and_an_unknown_account(server: Server) -> None:
    staff_user(server, "known.web@shop.example")
    with server.client() as browser:
        wrong = login(browser, "known.web@shop.example", "not the password")
        unknown = login(browser, "unknown.web@shop.example")

    assert wrong.status_code == unknown.status_code == 401
    assert "The e-mail or the password is wrong." in wrong.text
    assert "The e-mail or the password is wrong." in unknown.text


def test_five_wrong_passwords_make_the_sixth_try_wait_even_with_the_right_one(
    server: Server,
) -> None:
    staff_user(server, "throttle.web@shop.example")
    with server.client() as browser:
        answers = [
            login(browser, "throttle.web@shop.example", f"wrong {n}").status_code for n in range(5)
        ]
        blocked = login(browser, "throttle.web@shop.example")

    assert answers == [401] * 5
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["retry-after"]) <= 900
    assert "Too many failed attempts. Try again in 15 minutes." in blocked.text


def test_with_two_factor_the_password_alone_opens_nothing(server: Server) -> None:
    secret = staff_user(server, "totp.web@shop.example", with_totp=True)
    assert secret is not None
    with server.client() as browser:
        signed_in = login(browser, "totp.web@shop.example")
        too_early = browser.get("/admin")
        form = browser.get("/admin/login/code")
        wrong_code = f"{(int(totp.code_at(secret, utcnow())) + 500_000) % 10**6:06d}"
        wrong = browser.post("/admin/login/code", data={"code": wrong_code, "csrf": csrf_of(form)})
        right = browser.post(
            "/admin/login/code",
            data={"code": totp.code_at(secret, utcnow()), "csrf": csrf_of(form)},
        )
        home = browser.get("/admin")

    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/admin/login/code")
    assert (too_early.status_code, too_early.headers["location"]) == (303, "/admin/login/code")
    assert wrong.status_code == 401
    assert "That code is wrong or was used already." in wrong.text
    assert (right.status_code, right.headers["location"]) == (303, "/admin")
    assert "Signed in as totp.web@shop.example" in home.text
