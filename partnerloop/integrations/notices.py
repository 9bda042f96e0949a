"""Notices to the people who run partnerloop: an outgoing webhook endpoint that was
disabled after failing is told by e-mail to PARTNERLOOP_NOTIFY_EMAIL, with the
reason and what to do.

The notice is an outbox message like any delivery (fan-out of the
`connector.disabled` event): retried while the mail server is down, dead-lettered
and replayable, and sent with the message's id as its Message-ID, so a notice
sent again after a crash is recognisably the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.core.mail import Mailer, MailError
from partnerloop.sync.fanout import Destination, Subscriber
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Outcome, RemoteDeliverer

KIND = "owner_notice"
TOPICS = ("connector.disabled",)


def make_subscriber(recipients: Sequence[str]) -> Subscriber:
    """The notice subscribes to the events worth an e-mail, when anyone is to be told."""

    def subscribe(session: Session, program_id: str, topic: str) -> Sequence[Destination]:
        if not recipients or topic not in TOPICS:
            return []
        return [Destination(KIND, program_id)]

    return subscribe


def compose(
    message: OutboxMessage,
    payload: dict[str, Any],
    *,
    sender: str,
    recipients: Sequence[str],
    public_url: str,
) -> EmailMessage:
    data = payload.get("data") or {}
    connector_id = str(data.get("id", ""))
    api = f"{public_url.rstrip('/')}/api/v1"
    email = EmailMessage()
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Subject"] = f"partnerloop: endpoint {connector_id} disabled"
    email["Date"] = format_datetime(utcnow())
    # The outbox message's id: a notice sent again after a crash is the same message.
    email["Message-ID"] = make_msgid(idstring=message.id, domain="partnerloop")
    email.set_content(
        f"""The outgoing webhook endpoint {connector_id} of program {payload.get("program_id")}
was disabled at {payload.get("occurred_at")}.

Reason: {data.get("reason")}

Nothing is lost: the events it missed are kept as dead letters. Once the
receiver works again:

1. Enable the endpoint:
   POST {api}/connectors/{connector_id}/enable
2. Send what it missed:
   GET {api}/deliveries?connector_id={connector_id}&state=dead
   then POST {api}/deliveries/<id>/replay for each
   (or on the server: partnerloop deliveries list --connector {connector_id} --state dead,
   then partnerloop deliveries replay <id>)
"""
    )
    return email


def make_deliverer(
    mailer: Mailer, *, sender: str, recipients: Sequence[str], public_url: str
) -> RemoteDeliverer:
    def deliver(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        if not recipients:
            return Outcome(ok=True, response="PARTNERLOOP_NOTIFY_EMAIL is empty: nobody to tell")
        email = compose(
            message, payload, sender=sender, recipients=recipients, public_url=public_url
        )
        try:
            mailer.send(email)
        except MailError as error:
            return Outcome(ok=False, error=f"the notice e-mail was not sent: {error}")
        return Outcome(ok=True, response=f"e-mailed to {len(recipients)} address(es)")

    return deliver
