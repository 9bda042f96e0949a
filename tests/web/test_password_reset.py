"""Forgotten staff passwords: a signed, expiring, single-use link by e-mail
(through the outbox), the same answer for unknown addresses, CSRF, audit."""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from partnerloop.access import reset
from partnerloop.access.models import LoginFailure, StaffUser
from partnerloop.audit.models import AuditEntry
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.integrations import mail_outbox
from partnerloop.sync.models import OutboxMessage
from tests.conftest import Server, drain
from tests.support.staff import PASSWORD, csrf_of, make_staff, signed_in_client

NEW_PASSWORD = "a brand new passphrase"


def _browser(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30.0)


def _ask_for_link(browser: httpx.Client, email: str) -> httpx.Response:
    form = browser.get("/admin/password/forgot")
    return browser.post("/admin/password/forgot", data={"email": email, "csrf": csrf_of(form)})


def _mails_to(server: Server, email: str) -> list[str]:
    directory = Path(server.runtime.settings.data_dir) / "mail"
    found = []
    for path in sorted(directory.glob("*.eml")) if directory.exists() else []:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"] == email:
            found.append(str(message.get_body(("plain",)).get_content()))  # type: ignore[union-attr]
    return found


def _mail_jobs(server: Server) -> int:
    with transaction(server.runtime.sessions) as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.destination_kind == mail_outbox.KIND)
            )
            or 0
        )


def _login(browser: httpx.Client, email: str, password: str) -> int:
    form = browser.get("/admin/login")
    answer = browser.post(
        "/admin/login", data={"email": email, "password": password, "csrf": csrf_of(form)}
    )
    return answer.status_code


def test_a_reset_link_by_mail_sets_a_new_password_once(server: Server) -> None:
    email = make_staff(server, "manager")
    with _browser(server) as browser:
        asked = _ask_for_link(browser, email)
        drain(server.runtime)
        mails = _mails_to(server, email)
        assert len(mails) == 1, mails
        link = re.search(r"(http://\S+/admin/password/reset\?token=\S+)", mails[0])
        assert link
        parts = urlsplit(link.group(1))
        path = f"{parts.path}?{parts.query}"
        form = browser.get(path)
        token = re.search(r'name="token" value="([^"]+)"', form.text)
        assert token
        mismatch = browser.post(
            "/admin/password/reset",
            data={"token": token.group(1), "password": NEW_PASSWORD, "repeat": "something else"},
        )
        weak = browser.post(
            "/admin/password/reset",
            data={"token": token.group(1), "password": "short", "repeat": "short"},
        )
        done = browser.post(
            "/admin/password/reset",
            data={"token": token.group(1), "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
        )
        again = browser.get(path)
        reused = browser.post(
            "/admin/password/reset",
            data={
                "token": token.group(1),
                "password": "yet another passphrase",
                "repeat": "yet another passphrase",
            },
        )
    assert asked.status_code == 200
    assert "If that address has an account" in asked.text
    assert form.status_code == 200
    assert mismatch.status_code == 422
    assert weak.status_code == 422
    assert done.status_code == 200
    assert (again.status_code, reused.status_code) == (400, 400)  # single use
    with _browser(server) as browser:
        assert _login(browser, email, PASSWORD) == 401
    with _browser(server) as browser:
        assert _login(browser, email, NEW_PASSWORD) == 303
    with transaction(server.runtime.sessions) as db:
        user_id = db.scalar(
            select(StaffUser.id).where(
                StaffUser.email_index
                == server.runtime.cipher.blind_index(email, field="staff_users.email")
            )
        )
        actions = list(
            db.scalars(select(AuditEntry.action).where(AuditEntry.subject_id == user_id))
        )
    assert actions == ["staff.password_reset"]


def test_an_unknown_address_gets_the_same_answer_and_no_mail(server: Server) -> None:
    before = _mail_jobs(server)
    with _browser(server) as browser:
        answer = _ask_for_link(browser, "nobody-here@staff.example")
    assert answer.status_code == 200
    assert "If that address has an account" in answer.text
    assert _mail_jobs(server) == before


def test_asking_without_the_form_token_is_refused(server: Server) -> None:
    email = make_staff(server, "owner")
    before = _mail_jobs(server)
    with _browser(server) as browser:
        answer = browser.post("/admin/password/forgot", data={"email": email, "csrf": "forged"})
    assert answer.status_code == 403
    assert _mail_jobs(server) == before


def _token_for(server: Server, email: str, *, minutes_ago: int) -> str:
    with transaction(server.runtime.sessions) as db:
        user = db.scalars(
            select(StaffUser).where(
                StaffUser.email_index
                == server.runtime.cipher.blind_index(email, field="staff_users.email")
            )
        ).one()
        return reset.make_token(
            server.runtime.cipher,
            kind="staff",
            account_id=user.id,
            password_hash=user.password_hash,
            now=utcnow() - timedelta(minutes=minutes_ago),
        )


def test_an_expired_or_altered_link_opens_nothing(server: Server) -> None:
    email = make_staff(server, "finance")
    expired = _token_for(server, email, minutes_ago=61)
    fresh = _token_for(server, email, minutes_ago=0)
    account, expires, signature = fresh.split(".")
    stretched = f"{account}.{int(expires) + 86400}.{signature}"
    flipped = f"{account}.{expires}.{signature[:-1]}{'0' if signature[-1] != '0' else '1'}"
    with _browser(server) as browser:
        answers = [
            browser.post(
                "/admin/password/reset",
                data={"token": token, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
            ).status_code
            for token in (expired, stretched, flipped, "", "garbage")
        ]
    assert answers == [400, 400, 400, 400, 400]
    with _browser(server) as browser:
        assert _login(browser, email, PASSWORD) == 303  # the password did not change


def test_a_new_password_signs_out_every_open_session(server: Server) -> None:
    with signed_in_client(server, "analyst") as other_browser:
        assert other_browser.get("/admin").status_code == 200
        email = re.search(r"Signed in as (\S+) \(", other_browser.get("/admin").text)
        assert email
        token = _token_for(server, email.group(1), minutes_ago=0)
        with _browser(server) as browser:
            done = browser.post(
                "/admin/password/reset",
                data={"token": token, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
            )
        after = other_browser.get("/admin")
    assert done.status_code == 200
    assert (after.status_code, after.headers["location"]) == (303, "/admin/login")


def test_a_burst_of_requests_sends_five_links_and_locks_no_one_out(server: Server) -> None:
    email = make_staff(server, "owner")
    with _browser(server) as browser:
        answers = [_ask_for_link(browser, email).status_code for _ in range(7)]
        drain(server.runtime)
        signed_in = _login(browser, email, PASSWORD)
    assert answers == [200] * 7
    # Five requests counted (the last two were throttled and sent nothing); two
    # requests in the same second make the same link, sent once.
    index = server.runtime.cipher.blind_index(email, field="staff_users.email")
    with transaction(server.runtime.sessions) as db:
        counted = db.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(LoginFailure.key == f"reset:account:{index}")
        )
    assert counted == 5
    assert 1 <= len(_mails_to(server, email)) <= 5
    assert signed_in == 303
