"""Staff accounts: created with a role (partnerloop.access.roles), their
password kept as an argon2id hash, their e-mail encrypted and found by a
keyed blind index.

Checking a password costs the same whether the account exists or not (an
unknown e-mail is checked against a dummy hash), so a login form cannot be
used to find out who has an account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from partnerloop.access import totp
from partnerloop.access.models import StaffSession, StaffUser
from partnerloop.access.passwords import DUMMY_HASH as _DUMMY_HASH
from partnerloop.access.passwords import HASHER, MAX_PASSWORD
from partnerloop.access.roles import Role
from partnerloop.core.crypto import FieldCipher, looks_like_email, normalise_email
from partnerloop.core.errors import Conflict, InvalidInput
from partnerloop.core.ids import new_id

EMAIL_FIELD = "staff_users.email"
MIN_PASSWORD = 12  # NIST SP 800-63B asks for 8 at least; staff accounts guard money
# The argon2id hasher (HASHER, MAX_PASSWORD) is shared with affiliates: access.passwords.


@dataclass(frozen=True)
class NewStaff:
    email: str
    role: str
    password: str
    program_id: str | None = None


def check_password(password: str, *, email: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"The password must be at least {MIN_PASSWORD} characters.",
            code="weak_password",
            field="password",
        )
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(
            f"The password must be at most {MAX_PASSWORD} characters.",
            code="invalid_password",
            field="password",
        )
    if normalise_email(password) == normalise_email(email):
        raise InvalidInput(
            "The password must not be the e-mail address.", code="weak_password", field="password"
        )


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInput(
            f"Unknown role {role!r}; one of: {', '.join(r.value for r in Role)}.",
            code="invalid_role",
            field="role",
        ) from None


def create(session: Session, cipher: FieldCipher, new: NewStaff, *, now: datetime) -> StaffUser:
    """A new staff account. The caller has checked that `program_id` names a
    program (access sits beside programs and does not import it)."""
    email = normalise_email(new.email)
    if not looks_like_email(email):
        raise InvalidInput("That is not an e-mail address.", code="invalid_email", field="email")
    role = check_role(new.role)
    check_password(new.password, email=email)
    index = cipher.blind_index(email, field=EMAIL_FIELD)
    if session.scalar(select(StaffUser.id).where(StaffUser.email_index == index)) is not None:
        raise Conflict("A staff account with this e-mail exists.", code="staff_exists")
    user = StaffUser(
        id=new_id("staff_user"),
        email_enc=cipher.encrypt(email, field=EMAIL_FIELD),
        email_index=index,
        password_hash=HASHER.hash(new.password),
        role=role.value,
        program_id=new.program_id,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(
    session: Session, cipher: FieldCipher, *, email: str, password: str
) -> StaffUser | None:
    """The active account these credentials open, else None (the same work either way).
    A hash made with weaker parameters than today's is upgraded on the way."""
    index = cipher.blind_index(normalise_email(email), field=EMAIL_FIELD)
    user = session.scalar(select(StaffUser).where(StaffUser.email_index == index))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        HASHER.verify(stored, password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled_at is not None:
        return None
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    return user


def email_of(cipher: FieldCipher, user: StaffUser) -> str:
    return cipher.decrypt(user.email_enc, field=EMAIL_FIELD)


# --- two-factor authentication (TOTP) ----------------------------------------------------

TOTP_FIELD = "staff_users.totp_secret"


def begin_totp(cipher: FieldCipher, user: StaffUser, *, issuer: str) -> str:
    """A new TOTP secret for a user without two-factor, kept but not yet required:
    returns the otpauth:// URI to show (as a QR code). Two-factor is on once
    `confirm_totp` saw a code made from it. A user who has it on cannot start
    over here: the new secret would switch the old one off unconfirmed."""
    if has_totp(user):
        raise Conflict(
            "Two-factor authentication is on for this account already.", code="totp_enabled"
        )
    secret = totp.new_secret()
    user.totp_secret_enc = cipher.encrypt(secret, field=TOTP_FIELD)
    user.totp_enabled_at = None
    user.totp_last_step = None
    return totp.provisioning_uri(secret, account=email_of(cipher, user), issuer=issuer)


def confirm_totp(cipher: FieldCipher, user: StaffUser, code: str, *, now: datetime) -> bool:
    if user.totp_secret_enc is None:
        return False
    if not _accept_code(cipher, user, code, now=now):
        return False
    user.totp_enabled_at = now
    return True


def has_totp(user: StaffUser) -> bool:
    return user.totp_enabled_at is not None


def check_totp(cipher: FieldCipher, user: StaffUser, code: str, *, now: datetime) -> bool:
    """The second step of a login: a fresh code from the user's authenticator."""
    return has_totp(user) and _accept_code(cipher, user, code, now=now)


def _accept_code(cipher: FieldCipher, user: StaffUser, code: str, *, now: datetime) -> bool:
    assert user.totp_secret_enc is not None
    secret = cipher.decrypt(user.totp_secret_enc, field=TOTP_FIELD)
    step = totp.verify(secret, code, now=now, last_step=user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


def find_by_email(session: Session, cipher: FieldCipher, email: str) -> StaffUser | None:
    """The active account with this e-mail, if any."""
    index = cipher.blind_index(normalise_email(email), field=EMAIL_FIELD)
    user = session.scalar(select(StaffUser).where(StaffUser.email_index == index))
    return user if user is not None and user.disabled_at is None else None


def set_password(
    session: Session, cipher: FieldCipher, user: StaffUser, password: str, *, now: datetime
) -> None:
    """A new password (checked like at creation). Every open session of the
    account ends: whoever knew the old password is signed out."""
    check_password(password, email=email_of(cipher, user))
    user.password_hash = HASHER.hash(password)
    session.execute(
        update(StaffSession)
        .where(StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))
        .values(ended_at=now)
    )
