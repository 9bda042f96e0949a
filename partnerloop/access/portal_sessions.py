"""Affiliate sessions behind the portal's cookie (`pl_portal`).

Like staff sessions (partnerloop.access.sessions): the cookie holds a random
token, the database only its SHA-256; a session ends after 12 hours without use,
7 days in all, or at logout; it carries the CSRF token its forms post back.

A session belongs to one affiliate AND one program: the portal of another
program never accepts it (a token of program A on program B's portal is no
session at all). Whether the affiliate may still use the program (enrolled,
status) is the affiliates domain's call: access does not look at affiliates.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from partnerloop.access.models import PortalSession
from partnerloop.access.sessions import IDLE, LIFETIME, check_csrf_token
from partnerloop.core.crypto import hash_token

__all__ = ["IDLE", "LIFETIME", "Started", "check_csrf", "check_csrf_token", "end", "load", "start"]


@dataclass(frozen=True)
class Started:
    token: str  # for the cookie, once; never stored
    session: PortalSession


def start(session: Session, *, affiliate_id: str, program_id: str, now: datetime) -> Started:
    token = secrets.token_urlsafe(32)
    row = PortalSession(
        id=hash_token(token),
        affiliate_id=affiliate_id,
        program_id=program_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + LIFETIME,
    )
    session.add(row)
    session.flush()
    return Started(token, row)


def load(
    session: Session, token: str | None, *, program_id: str, now: datetime
) -> PortalSession | None:
    """The live session of this cookie token on this program's portal (its idle
    time restarted), else None."""
    if not token:
        return None
    row = session.get(PortalSession, hash_token(token))
    if row is None or row.program_id != program_id:
        return None
    if row.ended_at is not None or row.expires_at <= now or now - row.last_seen_at > IDLE:
        return None
    row.last_seen_at = now
    return row


def end(session: Session, row: PortalSession, *, now: datetime) -> None:
    row.ended_at = now


def check_csrf(row: PortalSession, given: str | None) -> None:
    """A form post or API write must carry the session's CSRF token (Forbidden otherwise)."""
    check_csrf_token(row.csrf_token, given)
