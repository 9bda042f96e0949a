"""The weekly report of a program: its ISO week against the week before, the
top affiliates, the commissions awaiting review and the sync health. The admin
page (/admin/report) and the e-mail are both built from `build`.

The e-mail is durable like every outgoing call: an outbox message per program
and week (destination `weekly_report`, keyed `weekly_report:{program}:{week}`,
so a second worker pass, a restart or `partnerloop report send` for the same
week queues nothing twice), delivered by the worker, retried while the mail
server is down, dead-lettered and replayable. The worker's periodic task
queues the last complete week's report of every program from Monday 06:00 UTC.

Recipients, resolved when it is sent: the program's staff with an owner,
manager or finance role (bound to the program or to every program), each in
their own language, and the PARTNERLOOP_NOTIFY_EMAIL addresses (in English);
each address once. Each gets a message of their own (no one sees the other
addresses) with a Message-ID made from the outbox message and the address, so
a message sent again (the mail server failed half-way through the recipients,
or the worker died between sending and recording it: delivery is at least
once, like every remote call) is recognisably the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.access.models import StaffUser
from partnerloop.access.roles import Role
from partnerloop.access.staff import email_of
from partnerloop.analytics import dashboard
from partnerloop.analytics.report import Week, WeekFigures, compare, due_week
from partnerloop.analytics.service import Stats
from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher, normalise_email
from partnerloop.core.mail import Mailer, MailError
from partnerloop.integrations.reporting import (
    ConnectorHealth,
    affiliate_names,
    awaiting_review,
    sync_health_of,
)
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.sync import service as sync
from partnerloop.sync.models import OutboxMessage
from partnerloop.sync.worker import Outcome, RemoteDeliverer

KIND = "weekly_report"
TOPIC = "report.weekly"
TOP = 10
RECIPIENT_ROLES = (Role.OWNER, Role.MANAGER, Role.FINANCE)
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class TopAffiliate:
    affiliate_id: str
    name: str
    stats: Stats


@dataclass(frozen=True)
class WeeklyReport:
    program_id: str
    program_name: str
    currency: str
    figures: WeekFigures
    top: list[TopAffiliate]
    awaiting_review: int
    health: list[ConnectorHealth]
    made_at: datetime

    @property
    def week(self) -> Week:
        return self.figures.week

    @property
    def dead_letters(self) -> int:
        return sum(connector.dead for connector in self.health)

    @property
    def backlog(self) -> int:
        return sum(connector.backlog for connector in self.health)


def build(
    session: Session, cipher: FieldCipher, *, program_id: str, week: Week, now: datetime
) -> WeeklyReport:
    program = programs.get_or_raise(session, program_id, field="program")
    page = dashboard.top_affiliates(
        session, program_id=program_id, period=week.period, sort="revenue", limit=TOP
    )
    names = affiliate_names(session, cipher, (row.affiliate_id for row in page.rows))
    return WeeklyReport(
        program_id=program.id,
        program_name=program.name,
        currency=program.currency,
        figures=compare(session, program_id=program_id, week=week),
        top=[
            TopAffiliate(row.affiliate_id, names.get(row.affiliate_id, ""), row.stats)
            for row in page.rows
        ],
        awaiting_review=awaiting_review(session, program_id=program_id),
        health=sync_health_of(session, program_id=program_id, now=now),
        made_at=now,
    )


# --- who gets it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    email: str
    language: str


def recipients(
    session: Session, cipher: FieldCipher, *, program_id: str, notify_emails: Sequence[str]
) -> list[Recipient]:
    users = session.scalars(
        select(StaffUser)
        .where(
            StaffUser.role.in_([role.value for role in RECIPIENT_ROLES]),
            or_(StaffUser.program_id == program_id, StaffUser.program_id.is_(None)),
            StaffUser.disabled_at.is_(None),
        )
        .order_by(StaffUser.created_at, StaffUser.id)
    )
    found: dict[str, Recipient] = {}
    for user in users:
        email = normalise_email(email_of(cipher, user))
        found.setdefault(email, Recipient(email, user.language or DEFAULT_LANGUAGE))
    for address in notify_emails:
        email = normalise_email(address)
        found.setdefault(email, Recipient(email, DEFAULT_LANGUAGE))
    return list(found.values())


# --- queueing ------------------------------------------------------------------------------


def idempotency_key(program_id: str, week: Week) -> str:
    return f"{KIND}:{program_id}:{week.label}"


def enqueue(
    session: Session, cipher: FieldCipher, *, program_id: str, week: Week, now: datetime
) -> bool:
    """Queue the report of this program and week; False if it was queued before."""
    programs.get_or_raise(session, program_id, field="program")
    return sync.enqueue(
        session,
        cipher,
        destination_kind=KIND,
        destination_id=program_id,
        topic=TOPIC,
        payload={"program_id": program_id, "week": week.label},
        idempotency_key=idempotency_key(program_id, week),
        program_id=program_id,
        now=now,
        occurred_at=week.due_at(),
    )


def enqueue_due(
    session: Session,
    cipher: FieldCipher,
    *,
    now: datetime,
    program_ids: Sequence[str] | None = None,
) -> int:
    """Queue the newest due week's report of every program that existed by the
    end of that week (or of `program_ids`). Run by the worker's periodic task;
    returns how many were new."""
    week = due_week(now)
    query = select(Program.id).where(Program.created_at < week.due_at()).order_by(Program.id)
    if program_ids is not None:
        query = query.where(Program.id.in_(program_ids))
    return sum(
        enqueue(session, cipher, program_id=program_id, week=week, now=now)
        for program_id in session.scalars(query)
    )


# --- sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


# The words and layout of the e-mail, in a language: given by the web layer,
# which owns the translation catalogue and the templates.
Renderer = Callable[[WeeklyReport, str], RenderedMail]


def message_id(message: OutboxMessage, recipient: Recipient) -> str:
    digest = hashlib.sha256(recipient.email.encode()).hexdigest()[:16]
    return f"<{message.id}.{digest}@partnerloop>"


def compose(
    message: OutboxMessage,
    report: WeeklyReport,
    recipient: Recipient,
    *,
    sender: str,
    render: Renderer,
    now: datetime,
) -> EmailMessage:
    rendered = render(report, recipient.language)
    email = EmailMessage()
    email["From"] = sender
    email["To"] = recipient.email
    email["Subject"] = rendered.subject
    email["Date"] = format_datetime(now)
    email["Message-ID"] = message_id(message, recipient)
    email["Content-Language"] = recipient.language
    email.set_content(rendered.text)
    email.add_alternative(rendered.html, subtype="html")
    return email


def make_deliverer(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    mailer: Mailer,
    *,
    sender: str,
    notify_emails: Sequence[str],
    render: Renderer,
    clock: Callable[[], datetime] = utcnow,
) -> RemoteDeliverer:
    def deliver(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        program_id = str(payload["program_id"])
        week = Week(*map(int, str(payload["week"]).split("-W")))
        now = clock()
        with sessions() as session:
            report = build(session, cipher, program_id=program_id, week=week, now=now)
            to = recipients(session, cipher, program_id=program_id, notify_emails=notify_emails)
        if not to:
            return Outcome(ok=True, response="no owner, manager, finance or notify address")
        for recipient in to:
            email = compose(message, report, recipient, sender=sender, render=render, now=now)
            try:
                mailer.send(email)
            except MailError as error:
                return Outcome(ok=False, error=f"the weekly report was not sent: {error}")
        return Outcome(ok=True, response=f"e-mailed to {len(to)} address(es)")

    return deliver
