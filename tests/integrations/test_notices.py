"""Notices by e-mail: an outgoing webhook endpoint disabled after failing is told
to PARTNERLOOP_NOTIFY_EMAIL through a real SMTP server on loopback (aiosmtpd),
durably: a mail server that is down gets the notice once it is back."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from partnerloop.core.mail import FileMailer, SmtpMailer, mailer_from_url
from partnerloop.core.settings import Settings, SettingsError
from partnerloop.integrations import notices
from partnerloop.sync.models import OutboxMessage
from tests.conftest import Server
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.support.clock import Clock, worker
from tests.support.http import Reply, ScriptedServer
from tests.support.smtp import free_port, smtp_server

OPS = "ops@example.com"


def disabled_endpoint(api: Any, gone: ScriptedServer) -> tuple[dict[str, Any], dict[str, Any]]:
    """An endpoint that answers 410 Gone to its first event: disabled at once."""
    program = create_program_api(api)
    response = api.post(
        "/api/v1/connectors",
        json={
            "program_id": program["id"],
            "kind": "webhook",
            "settings": {"url": gone.url, "events": ["conversion.created"]},
        },
    )
    assert response.status_code == 201, response.text
    report_order(api, program["id"], f"notice-{response.json()['id']}", "10.00")
    return program, response.json()


@pytest.fixture
def gone() -> Iterator[ScriptedServer]:
    receiver = ScriptedServer([], then=Reply(410))
    with receiver.running():
        yield receiver


def notice_messages(server: Server, program_id: str) -> list[OutboxMessage]:
    with server.runtime.sessions() as db:
        return list(
            db.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.destination_kind == notices.KIND,
                    OutboxMessage.destination_id == program_id,
                )
            )
        )


def test_a_disabled_endpoint_is_told_by_e_mail_with_what_to_do(
    server: Server, gone: ScriptedServer
) -> None:
    port = free_port()
    with smtp_server(port) as inbox, server.client() as api:
        program, hook = disabled_endpoint(api, gone)
        worker(
            server.runtime,
            Clock(),
            mail_url=f"smtp://127.0.0.1:{port}?security=none",
            mail_from="partnerloop <noreply@shop.example>",
            notify_emails=(OPS,),
        ).drain()

    [(envelope, email)] = inbox.messages
    [message] = notice_messages(server, program["id"])
    assert envelope.rcpt_tos == [OPS]
    assert email["To"] == OPS
    assert email["From"] == "partnerloop <noreply@shop.example>"
    assert email["Subject"] == f"partnerloop: endpoint {hook['id']} disabled"
    assert message.id in email["Message-ID"]
    body = email.get_content()
    assert "Reason: the endpoint answered 410 Gone" in body
    assert f"POST http://127.0.0.1:8000/api/v1/connectors/{hook['id']}/enable" in body
    assert message.state == "delivered"


def test_a_mail_server_that_is_down_gets_the_notice_once_it_is_back(
    server: Server, gone: ScriptedServer
) -> None:
    port = free_port()
    clock = Clock()
    settings = {"mail_url": f"smtp://127.0.0.1:{port}?security=none", "notify_emails": (OPS,)}
    with server.client() as api:
        program, _ = disabled_endpoint(api, gone)
        worker(server.runtime, clock, **settings).drain()  # nobody listens on the port
        [waiting] = notice_messages(server, program["id"])
        with smtp_server(port) as inbox:
            for _ in range(3):
                clock.advance(3600)
                worker(server.runtime, clock, **settings).drain()

    [delivered] = notice_messages(server, program["id"])
    assert (waiting.state, waiting.attempts) == ("retry", 1)
    assert "the notice e-mail was not sent" in (waiting.last_error or "")
    assert (delivered.state, delivered.attempts) == ("delivered", 2)
    assert len(inbox.messages) == 1


def test_without_notify_addresses_no_notice_is_queued(server: Server, gone: ScriptedServer) -> None:
    with server.client() as api:
        program, hook = disabled_endpoint(api, gone)
        worker(server.runtime, Clock(), notify_emails=()).drain()
        shown = api.get(f"/api/v1/connectors/{hook['id']}").json()

    assert shown["status"] == "disabled"
    assert notice_messages(server, program["id"]) == []


def test_the_default_mailer_writes_eml_files(
    server: Server, gone: ScriptedServer, tmp_path: Path
) -> None:
    outbox = tmp_path / "mail"
    with server.client() as api:
        _, hook = disabled_endpoint(api, gone)
        worker(server.runtime, Clock(), mail_url=f"file://{outbox}", notify_emails=(OPS,)).drain()

    [written] = list(outbox.glob("*.eml"))
    email = message_from_bytes(written.read_bytes(), policy=policy.default)
    assert email["Subject"] == f"partnerloop: endpoint {hook['id']} disabled"
    assert list(outbox.glob("*.part")) == []  # only whole files


def test_mail_urls_are_read_or_refused_with_the_reason(tmp_path: Path) -> None:
    assert mailer_from_url("", data_dir=tmp_path) == FileMailer(tmp_path / "mail")
    assert mailer_from_url("smtp://bob:p%40ss@mail.example.com", data_dir=tmp_path) == SmtpMailer(
        host="mail.example.com", port=587, username="bob", password="p@ss", security="auto"
    )
    assert mailer_from_url("smtps://mail.example.com", data_dir=tmp_path) == SmtpMailer(
        host="mail.example.com", port=465, security="ssl"
    )
    with pytest.raises(SettingsError, match="scheme must be smtp, smtps or file"):
        Settings.from_env({"PARTNERLOOP_MAIL_URL": "http://mail.example.com"})
    with pytest.raises(SettingsError, match="security must be one of"):
        Settings.from_env({"PARTNERLOOP_MAIL_URL": "smtp://mail.example.com?security=tls13"})
    with pytest.raises(SettingsError, match="is not an e-mail address"):
        Settings.from_env({"PARTNERLOOP_NOTIFY_EMAIL": "ops@example.com, nobody"})
