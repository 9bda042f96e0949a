"""The staff member's own account: language setting, two-factor setup with a QR
code, the program's two-factor requirement, password change; CSRF on each."""

from __future__ import annotations

import re
import secrets

import httpx
from sqlalchemy import select

from partnerloop.access import staff, totp
from partnerloop.access.models import StaffUser
from partnerloop.audit.models import AuditEntry
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.programs.models import Program
from tests.conftest import Server
from tests.factories.programs import create_program_api
from tests.support.staff import PASSWORD, csrf_of, signed_in_client


def _user(server: Server, browser: httpx.Client) -> StaffUser:
    match = re.search(
        r"Signed in as (\S+) \(|Ingelogd als (\S+) \(", browser.get("/admin/account").text
    )
    assert match
    email = match.group(1) or match.group(2)
    index = server.runtime.cipher.blind_index(email, field="staff_users.email")
    with transaction(server.runtime.sessions) as db:
        user = db.scalars(select(StaffUser).where(StaffUser.email_index == index)).one()
        db.expunge(user)
        return user


def test_the_language_setting_beats_the_browser(server: Server) -> None:
    with signed_in_client(server, "analyst", language="en") as browser:
        page = browser.get("/admin/account")
        forged = browser.post("/admin/account/language", data={"language": "nl"})
        still_english = browser.get("/admin/account")
        saved = browser.post(
            "/admin/account/language", data={"language": "nl", "csrf": csrf_of(page)}
        )
        dutch = browser.get("/admin")
        back = browser.post("/admin/account/language", data={"language": "", "csrf": csrf_of(page)})
        english = browser.get("/admin")
    assert forged.status_code == 403
    assert "Your account" in still_english.text
    assert (saved.status_code, saved.headers["location"]) == (303, "/admin/account?saved=language")
    assert 'lang="nl"' in dutch.text
    assert "Uitloggen" in dutch.text
    assert back.status_code == 303
    assert 'lang="en"' in english.text


def test_two_factor_setup_shows_a_qr_code_and_turns_on_with_a_code(server: Server) -> None:
    with signed_in_client(server, "manager") as browser:
        start_page = browser.get("/admin/account/two-factor")
        started = browser.post(
            "/admin/account/two-factor/start", data={"csrf": csrf_of(start_page)}
        )
        pending = browser.get("/admin/account/two-factor")
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', pending.text)
        assert secret
        wrong = browser.post(
            "/admin/account/two-factor/confirm",
            data={
                "code": "000000"
                if totp.code_at(secret.group(1), utcnow()) != "000000"
                else "111111",
                "csrf": csrf_of(pending),
            },
        )
        right = browser.post(
            "/admin/account/two-factor/confirm",
            data={"code": totp.code_at(secret.group(1), utcnow()), "csrf": csrf_of(pending)},
        )
        user = _user(server, browser)
    assert start_page.status_code == 200
    assert started.status_code == 303
    assert "<svg" in pending.text  # the QR code, drawn on the server
    assert "otpauth" not in pending.text
    assert (wrong.status_code, wrong.headers["location"]) == (
        303,
        "/admin/account/two-factor?error=1",
    )
    assert (right.status_code, right.headers["location"]) == (
        303,
        "/admin/account?saved=two_factor",
    )
    assert user.totp_enabled_at is not None
    with transaction(server.runtime.sessions) as db:
        actions = list(
            db.scalars(select(AuditEntry.action).where(AuditEntry.subject_id == user.id))
        )
    assert actions == ["staff.two_factor_enabled"]
    # The next sign-in asks for a code.
    with httpx.Client(base_url=server.url, follow_redirects=False) as fresh:
        form = fresh.get("/admin/login")
        signed = fresh.post(
            "/admin/login",
            data={
                "email": staff.email_of(server.runtime.cipher, user),
                "password": PASSWORD,
                "csrf": csrf_of(form),
            },
        )
    assert (signed.status_code, signed.headers["location"]) == (303, "/admin/login/code")


def test_a_program_that_requires_two_factor_sends_staff_to_set_it_up(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, name=f"2FA shop {secrets.token_hex(3)}")
    with transaction(server.runtime.sessions) as db:
        db.get_one(Program, program["id"]).require_two_factor = True
    try:
        with signed_in_client(server, "owner", program_id=program["id"]) as browser:
            blocked = browser.get("/admin")
            account = browser.get("/admin/account")
            setup = browser.get(blocked.headers["location"])
            browser.post("/admin/account/two-factor/start", data={"csrf": csrf_of(setup)})
            pending = browser.get("/admin/account/two-factor")
            secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', pending.text)
            assert secret
            browser.post(
                "/admin/account/two-factor/confirm",
                data={"code": totp.code_at(secret.group(1), utcnow()), "csrf": csrf_of(pending)},
            )
            open_now = browser.get("/admin")
    finally:
        with transaction(server.runtime.sessions) as db:
            db.get_one(Program, program["id"]).require_two_factor = False
    assert (blocked.status_code, blocked.headers["location"]) == (
        303,
        "/admin/account/two-factor?required=1",
    )
    assert account.status_code == 200
    assert "requires two-step verification" in setup.text
    assert open_now.status_code == 200


def test_changing_the_password_needs_the_current_one(server: Server) -> None:
    with signed_in_client(server, "finance") as browser:
        page = browser.get("/admin/account")
        wrong = browser.post(
            "/admin/account/password",
            data={
                "current": "not it at all",
                "password": "another long passphrase",
                "repeat": "another long passphrase",
                "csrf": csrf_of(page),
            },
        )
        changed = browser.post(
            "/admin/account/password",
            data={
                "current": PASSWORD,
                "password": "another long passphrase",
                "repeat": "another long passphrase",
                "csrf": csrf_of(page),
            },
        )
        after = browser.get("/admin")
    assert wrong.status_code == 422
    assert "current password is not right" in wrong.text
    assert (changed.status_code, changed.headers["location"]) == (303, "/admin/login")
    assert after.status_code == 303  # signed out with the change
