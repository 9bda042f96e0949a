"""Sending e-mail: a pluggable mailer chosen by PARTNERLOOP_MAIL_URL.

- `smtp://user:password@host:587` (STARTTLS when the server offers it; add
  `?security=starttls` to require it, `?security=none` to never use it),
  `smtps://user:password@host:465` (TLS from the start);
- `file:///var/lib/partnerloop/mail`: each message is written there as an .eml
  file (the demo, and a machine without a mail server);
- empty (the default): the same file outbox under the data directory.

A mailer raises MailError when the message was not accepted: the caller (a
delivery-engine job) retries. Message bodies are never logged: they name people.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

SECURITY = ("auto", "starttls", "ssl", "none")


class MailError(Exception):
    """The message was not accepted (server down, refused, misconfigured)."""


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    security: str = "auto"  # auto | starttls | ssl | none
    timeout: float = 30.0

    def send(self, message: EmailMessage) -> None:
        try:
            if self.security == "ssl":
                context = ssl.create_default_context()
                with smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                ) as smtp:
                    self._deliver(smtp, message)
                return
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                offered = smtp.has_extn("starttls")
                if self.security == "starttls" and not offered:
                    raise MailError(f"{self.host}:{self.port} does not offer STARTTLS")
                if self.security in ("starttls", "auto") and offered:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                self._deliver(smtp, message)
        except (OSError, smtplib.SMTPException) as error:
            raise MailError(f"{self.host}:{self.port}: {type(error).__name__}: {error}") from None

    def _deliver(self, smtp: smtplib.SMTP, message: EmailMessage) -> None:
        if self.username:
            smtp.login(self.username, self.password or "")
        refused = smtp.send_message(message)
        if refused:
            raise MailError(f"refused recipients: {', '.join(sorted(refused))}")


@dataclass(frozen=True)
class FileMailer:
    """Writes each message as an .eml file: whole files only (written aside,
    then renamed), named so they sort by time."""

    directory: Path

    def send(self, message: EmailMessage) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".part")
            with os.fdopen(handle, "wb") as out:
                out.write(message.as_bytes())
            unique = os.path.basename(temporary).removesuffix(".part")
            os.replace(temporary, self.directory / f"{time.time_ns():020d}{unique}.eml")
        except OSError as error:
            raise MailError(f"could not write to {self.directory}: {error}") from None


def mailer_from_url(url: str, *, data_dir: Path) -> Mailer:
    """The mailer PARTNERLOOP_MAIL_URL names; ValueError says what is wrong."""
    if not url.strip():
        return FileMailer(data_dir / "mail")
    parts = urlsplit(url.strip())
    if parts.scheme == "file":
        if not parts.path:
            raise ValueError("a file: mail URL needs a directory, e.g. file:///var/mail/pl")
        return FileMailer(Path(unquote(parts.path)))
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"mail URL scheme must be smtp, smtps or file, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("an smtp mail URL needs a host, e.g. smtp://mail.example.com:587")
    query = parse_qs(parts.query)
    security = query.get("security", ["ssl" if parts.scheme == "smtps" else "auto"])[0]
    if security not in SECURITY:
        raise ValueError(f"security must be one of {', '.join(SECURITY)}, not {security!r}")
    return SmtpMailer(
        host=parts.hostname,
        port=parts.port or (465 if security == "ssl" else 587),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        security=security,
    )
