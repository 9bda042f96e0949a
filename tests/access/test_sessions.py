"""Staff sessions (cookie token hashed, idle and absolute expiry, two-factor
gate, CSRF) and login throttling (5 failures in 15 minutes per account, 20 per
address), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from partnerloop.access import sessions, staff, throttle
from partnerloop.access.models import StaffSession, StaffUser
from partnerloop.core.crypto import hash_token
from partnerloop.core.errors import Forbidden
from partnerloop.runtime import Runtime

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def user(session: Session, runtime: Runtime, email: str) -> StaffUser:
    return staff.create(
        session,
        runtime.cipher,
        staff.NewStaff(email=email, role="manager", password="correct horse battery"),
        now=NOW,
    )


def test_the_cookie_token_opens_the_session_and_only_its_hash_is_stored(
    session: Session, runtime: Runtime
) -> None:
    ada = user(session, runtime, "ada.session@shop.example")
    started = sessions.start(session, ada, now=NOW)

    assert started.session.id == hash_token(started.token)
    assert started.token not in started.session.id
    loaded = sessions.load(session, started.token, now=NOW + timedelta(minutes=5))
    assert loaded is started.session
    assert sessions.signed_in(loaded)
    assert loaded is not None
    assert loaded.last_seen_at == NOW + timedelta(minutes=5)
    assert sessions.load(session, started.token + "x", now=NOW) is None
    assert sessions.load(session, None, now=NOW) is None


def test_a_session_ends_when_idle_too_long_at_its_lifetime_or_at_logout(
    session: Session, runtime: Runtime
) -> None:
    grace = user(session, runtime, "grace.session@shop.example")
    idle = sessions.start(session, grace, now=NOW)
    used = sessions.start(session, grace, now=NOW)
    logged_out = sessions.start(session, grace, now=NOW)

    sessions.end(session, logged_out.session, now=NOW)
    assert sessions.load(session, logged_out.token, now=NOW) is None
    assert sessions.load(session, idle.token, now=NOW + timedelta(hours=12, seconds=1)) is None
    # Used every few hours it lives on, but never past its 7 days.
    moment = NOW
    while moment < NOW + timedelta(days=6, hours=20):
        moment += timedelta(hours=4)
        assert sessions.load(session, used.token, now=moment) is not None
    assert sessions.load(session, used.token, now=NOW + timedelta(days=7)) is None


def test_a_disabled_account_locks_every_browser_out(session: Session, runtime: Runtime) -> None:
    linus = user(session, runtime, "linus.session@shop.example")
    first = sessions.start(session, linus, now=NOW)
    second = sessions.start(session, linus, now=NOW)

    linus.disabled_at = NOW
    assert sessions.load(session, first.token, now=NOW) is None
    assert sessions.load(session, second.token, now=NOW) is None


def test_with_two_factor_on_the_password_alone_opens_nothing(
    session: Session, runtime: Runtime
) -> None:
    margaret = user(session, runtime, "margaret.session@shop.example")
    staff.begin_totp(runtime.cipher, margaret, issuer="partnerloop")
    margaret.totp_enabled_at = NOW  # as confirm_totp leaves it

    started = sessions.start(session, margaret, now=NOW)
    loaded = sessions.load(session, started.token, now=NOW)
    assert loaded is not None
    assert not sessions.signed_in(loaded)
    sessions.pass_second_factor(loaded)
    assert sessions.signed_in(loaded)


def test_a_form_without_the_sessions_csrf_token_is_refused(
    session: Session, runtime: Runtime
) -> None:
    row: StaffSession = sessions.start(
        session, user(session, runtime, "csrf@shop.example"), now=NOW
    ).session

    sessions.check_csrf(row, row.csrf_token)
    for forged in (None, "", row.csrf_token[:-1], "x" * len(row.csrf_token), "é"):
        with pytest.raises(Forbidden) as refused:
            sessions.check_csrf(row, forged)
        assert refused.value.code == "csrf_failed"


def test_five_failures_in_fifteen_minutes_make_the_next_try_wait(
    session: Session, runtime: Runtime
) -> None:
    keys = throttle.keys_for(f"index-{NOW.timestamp()}-{id(session)}", "203.0.113.7")
    for minute in range(4):
        throttle.record_failure(session, keys, now=NOW + timedelta(minutes=minute))
    assert throttle.wait_seconds(session, keys, now=NOW + timedelta(minutes=4)) == 0.0

    throttle.record_failure(session, keys, now=NOW + timedelta(minutes=4))
    # Blocked until the oldest of the five is 15 minutes old.
    assert throttle.wait_seconds(session, keys, now=NOW + timedelta(minutes=5)) == 600.0
    assert throttle.wait_seconds(session, keys, now=NOW + timedelta(minutes=15)) == 0.0
    # Another account from the same address is not held back by 5 failures: an
    # office behind one address is many people...
    other = throttle.keys_for("another-account", "203.0.113.7")
    assert throttle.wait_seconds(session, other, now=NOW + timedelta(minutes=5)) == 0.0
    # ...but 20 from one address within the window are (here 5 + 15 more).
    for n in range(15):
        sprayed = throttle.keys_for(f"sprayed-{n}", "203.0.113.7")
        throttle.record_failure(session, sprayed, now=NOW + timedelta(minutes=5))
    assert throttle.wait_seconds(session, other, now=NOW + timedelta(minutes=6)) == 540.0
    # A success clears the account's count, not the address's.
    throttle.clear(session, keys)
    assert throttle.wait_seconds(session, keys[:1], now=NOW + timedelta(minutes=6)) == 0.0
    assert throttle.wait_seconds(session, keys[1:], now=NOW + timedelta(minutes=6)) == 540.0


def test_the_throttle_table_holds_no_email_or_address_in_clear() -> None:
    keys = throttle.keys_for("3f2a-blind-index", "198.51.100.23")
    assert keys[0] == "account:3f2a-blind-index"
    assert "198.51.100.23" not in keys[1]
