"""Login throttling: after 5 failed logins for one account (or 20 from one
address: an office behind one NAT is many people) within 15 minutes, further
tries wait until the oldest of those is 15 minutes old. Kept in the database,
so every web process sees the same count.

The account is named by its e-mail's blind index (never the e-mail itself), the
address by a hash of it: this table holds no personal data in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from partnerloop.access.models import LoginFailure
from partnerloop.core.crypto import hash_token
from partnerloop.core.ids import new_id

LIMIT = 5  # per account
ADDRESS_LIMIT = 20  # per client address
WINDOW = timedelta(minutes=15)


def keys_for(email_index: str, client_ip: str | None) -> list[str]:
    keys = [f"account:{email_index}"]
    if client_ip:
        keys.append(f"address:{hash_token(client_ip)[:40]}")
    return keys


def wait_seconds(session: Session, keys: Sequence[str], *, now: datetime) -> float:
    """0.0 when a login may be tried now, else how long until it may."""
    longest = 0.0
    for key in keys:
        limit = ADDRESS_LIMIT if key.startswith("address:") else LIMIT
        recent = list(
            session.scalars(
                select(LoginFailure.at)
                .where(LoginFailure.key == key, LoginFailure.at > now - WINDOW)
                .order_by(LoginFailure.at.desc())
                .limit(limit)
            )
        )
        if len(recent) >= limit:
            longest = max(longest, (recent[-1] + WINDOW - now).total_seconds())
    return longest


def record_failure(session: Session, keys: Sequence[str], *, now: datetime) -> None:
    for key in keys:
        session.add(LoginFailure(id=new_id("login_failure"), key=key, at=now))
    # Nothing older than the window matters any more.
    session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))


def clear(session: Session, keys: Sequence[str]) -> None:
    """A successful login forgets the account's failures (not the address's)."""
    session.execute(
        delete(LoginFailure).where(
            LoginFailure.key.in_([k for k in keys if k.startswith("account:")])
        )
    )
