"""Staff sessions behind the admin pages' cookie.

The cookie holds a random token; the database holds only its SHA-256, so a
copy of the database opens no session. A session ends after 12 hours without
use or 7 days in all, or when its user logs out, or the account is disabled. Each carries a CSRF token that
every form posts back (compared in constant time). A user with two-factor on
gets a session that opens nothing until a code was given.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from partnerloop.access import staff
from partnerloop.access.models import StaffSession, StaffUser
from partnerloop.core.crypto import hash_token
from partnerloop.core.errors import Forbidden

IDLE = timedelta(hours=12)
LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class Started:
    token: str  # for the cookie, once; never stored
    session: StaffSession


def start(session: Session, user: StaffUser, *, now: datetime) -> Started:
    token = secrets.token_urlsafe(32)
    row = StaffSession(
        id=hash_token(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        second_factor_done=not staff.has_totp(user),
        created_at=now,
        last_seen_at=now,
        expires_at=now + LIFETIME,
    )
    session.add(row)
    session.flush()
    return Started(token, row)


def load(session: Session, token: str | None, *, now: datetime) -> StaffSession | None:
    """The live session of this cookie token (its idle time restarted), else None."""
    if not token:
        return None
    row = session.get(StaffSession, hash_token(token))
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if now - row.last_seen_at > IDLE:
        return None
    user = session.get(StaffUser, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    row.last_seen_at = now
    return row


def signed_in(row: StaffSession | None) -> bool:
    """A session that opens the admin pages: password and, if on, a code given."""
    return row is not None and row.second_factor_done


def pass_second_factor(row: StaffSession) -> None:
    row.second_factor_done = True


def end(session: Session, row: StaffSession, *, now: datetime) -> None:
    row.ended_at = now


def check_csrf(row: StaffSession, given: str | None) -> None:
    """A form post must carry the session's CSRF token; otherwise it changes nothing."""
    check_csrf_token(row.csrf_token, given)


def check_csrf_token(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden(
            "The form is out of date or did not come from this site; reload it and try again.",
            code="csrf_failed",
        )
