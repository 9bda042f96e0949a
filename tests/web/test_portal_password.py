"""Forgotten portal passwords: a signed, single-use link from the program's own
sender, to the portal it was asked on; the same answer for unknown addresses
and other programs' affiliates; how an affiliate staff signed up sets a
password."""

from __future__ import annotations

import re
import secrets
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from partnerloop.integrations import mail_outbox
from partnerloop.sync.models import OutboxMessage
from tests.affiliates.portal_support import (
    PASSWORD,
    browser,
    csrf_of,
    portal_program,
    sign_in,
    signed_up,
)
from tests.conftest import Server, drain
from tests.factories.affiliates import create_affiliate_api

NEW_PASSWORD = "my new portal passphrase"
SENDER = "Brand Partners <partners@brand.example>"


def _mails_to(server: Server, email: str) -> list[EmailMessage]:
    directory = Path(server.runtime.settings.data_dir) / "mail"
    found: list[EmailMessage] = []
    for path in sorted(directory.glob("*.eml")) if directory.exists() else []:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        if message["To"] == email:
            found.append(message)
    return found


def _link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    match = re.search(r"(https?://\S+/password/reset\?token=\S+)", str(body.get_content()))
    assert match, body.get_content()
    return match.group(1)


def _ask(client: httpx.Client, base: str, email: str, **headers: str) -> httpx.Response:
    form = client.get(f"{base}/password/forgot", headers=headers)
    assert form.status_code == 200, form.text
    return client.post(
        f"{base}/password/forgot", data={"email": email, "csrf": csrf_of(form)}, headers=headers
    )


def _mail_jobs(server: Server) -> int:
    with server.runtime.sessions() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.destination_kind == mail_outbox.KIND)
            )
            or 0
        )


def _set(client: httpx.Client, link: str, password: str, **headers: str) -> httpx.Response:
    parts = urlsplit(link)
    token = parts.query.removeprefix("token=")
    return client.post(
        parts.path,
        data={"token": token, "password": password, "repeat": password},
        headers=headers,
    )


def test_a_forgotten_password_is_reset_by_a_link_from_the_programs_sender(
    server: Server,
) -> None:
    program = portal_program(server, mail_sender=SENDER, portal_name="Brand Partners")
    base = f"/portal/{program['id']}"
    with signed_up(server, program["id"]) as (_, email):
        pass
    with browser(server) as client:
        asked = _ask(client, base, email)
        drain(server.runtime)
        mails = _mails_to(server, email)
        assert len(mails) == 1
        link = _link_in(mails[0])
        opened = client.get(urlsplit(link).path + "?" + urlsplit(link).query)
        done = _set(client, link, NEW_PASSWORD)
        reused = _set(client, link, "yet another passphrase")
    assert asked.status_code == 200
    assert "a link to set a password is on its way" in asked.text
    assert mails[0]["From"] == SENDER
    assert mails[0]["Subject"] == "Your password for Brand Partners"
    assert link.startswith(f"{server.runtime.settings.public_url}{base}/password/reset?token=")
    assert opened.status_code == 200
    assert done.status_code == 200
    assert reused.status_code == 400  # once only
    with browser(server) as client:
        assert sign_in(client, program["id"], email, PASSWORD).status_code == 401
    with browser(server) as client:
        assert sign_in(client, program["id"], email, NEW_PASSWORD).status_code == 303


def test_an_affiliate_staff_signed_up_sets_a_first_password(server: Server) -> None:
    program = portal_program(server)
    with server.client() as api:
        affiliate = create_affiliate_api(api, program["id"])
    base = f"/portal/{program['id']}"
    with browser(server) as client:
        before = sign_in(client, program["id"], affiliate["email"], PASSWORD)
        _ask(client, base, affiliate["email"])
        drain(server.runtime)
        (mail,) = _mails_to(server, affiliate["email"])
        done = _set(client, _link_in(mail), NEW_PASSWORD)
    with browser(server) as client:
        after = sign_in(client, program["id"], affiliate["email"], NEW_PASSWORD)
    assert before.status_code == 401
    assert done.status_code == 200
    assert (after.status_code, after.headers["location"]) == (303, f"{base}/")


def test_unknown_addresses_and_other_programs_affiliates_get_the_same_answer_and_no_mail(
    server: Server,
) -> None:
    mine, theirs = portal_program(server), portal_program(server)
    with signed_up(server, theirs["id"]) as (_, outsider):
        pass
    before = _mail_jobs(server)
    with browser(server) as client:
        unknown = _ask(client, f"/portal/{mine['id']}", f"nobody-{secrets.token_hex(3)}@x.example")
        other = _ask(client, f"/portal/{mine['id']}", outsider)
        forged = client.post(
            f"/portal/{mine['id']}/password/forgot", data={"email": outsider, "csrf": "forged"}
        )
    assert unknown.status_code == other.status_code == 200
    assert "on its way" in unknown.text
    assert "on its way" in other.text
    assert forged.status_code == 403
    assert _mail_jobs(server) == before


def test_the_link_points_at_the_brands_own_domain_when_asked_there(server: Server) -> None:
    tag = secrets.token_hex(3)
    host = f"partners-{tag}.reset-brand.example"
    program = portal_program(server)
    with server.client() as api:
        configured = api.patch(
            f"/api/v1/programs/{program['id']}/settings", json={"portal_domain": host}
        )
        assert configured.status_code == 200, configured.text
    with signed_up(server, program["id"]) as (_, email):
        pass
    with browser(server) as client:
        asked = _ask(client, "", email, Host=host)
        drain(server.runtime)
        (mail,) = _mails_to(server, email)
        link = _link_in(mail)
        done = _set(client, link, NEW_PASSWORD, Host=host)
    assert asked.status_code == 200
    assert link.startswith(f"http://{host}/password/reset?token=")
    assert done.status_code == 200
    assert "Your password is set" in done.text
