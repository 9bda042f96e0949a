"""E-mail to people (a password reset link, a report) as outbox messages.

The message is queued in the same transaction as what caused it, its payload
encrypted like every outbox payload (it may hold a reset link or an address),
then sent by the worker through the configured mailer: retried while the mail
server is down, dead-lettered and replayable, and sent with the outbox id as
its Message-ID, so a resend after a crash is recognisably the same e-mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.mail import Mailer, MailError
from partnerloop.sync import service as sync
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Outcome, RemoteDeliverer

KIND = "mail"
DESTINATION = "mailer"


def queue(
    session: Session,
    cipher: FieldCipher,
    *,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    sender: str | None = None,
    key: str,
    program_id: str | None,
    now: datetime,
) -> bool:
    """Queue one e-mail once per key (True if new). `sender` None: PARTNERLOOP_MAIL_FROM."""
    return sync.enqueue(
        session,
        cipher,
        destination_kind=KIND,
        destination_id=DESTINATION,
        topic="mail",
        payload={
            "to": list(to),
            "subject": subject,
            "text": text,
            "html": html,
            "sender": sender,
        },
        idempotency_key=key,
        program_id=program_id,
        now=now,
    )


def compose(
    message: OutboxMessage, payload: dict[str, Any], *, default_sender: str
) -> EmailMessage:
    email = EmailMessage()
    email["From"] = payload.get("sender") or default_sender
    email["To"] = ", ".join(payload["to"])
    email["Subject"] = payload["subject"]
    email["Date"] = format_datetime(utcnow())
    email["Message-ID"] = make_msgid(idstring=message.id, domain="partnerloop")
    email.set_content(payload["text"])
    if payload.get("html"):
        email.add_alternative(payload["html"], subtype="html")
    return email


def make_deliverer(mailer: Mailer, *, default_sender: str) -> RemoteDeliverer:
    def deliver(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        if not payload.get("to"):
            return Outcome(ok=True, response="no recipients")
        try:
            mailer.send(compose(message, payload, default_sender=default_sender))
        except MailError as error:
            return Outcome(ok=False, error=f"the e-mail was not sent: {error}")
        return Outcome(ok=True, response=f"e-mailed to {len(payload['to'])} address(es)")

    return deliver
