"""Password hashing for everyone who logs in (staff and affiliates): argon2id.

Checking a password costs the same whether an account exists or not: callers
without a stored hash verify against a dummy one, so a login form cannot be
used to find out who has an account.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_PASSWORD = 1024  # argon2 takes any length; this bounds the work a request can ask for

# argon2-cffi's defaults (argon2id, RFC 9106's low-memory choice: t=3, m=64 MiB, p=4).
HASHER = PasswordHasher()
DUMMY_HASH = HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """Whether the password opens this hash; None (no account, no password yet)
    is checked against the dummy hash, so it takes as long and says no."""
    try:
        HASHER.verify(stored or DUMMY_HASH, password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return stored is not None


def needs_rehash(stored: str) -> bool:
    """A hash made with weaker parameters than today's: upgrade it at the next login."""
    return HASHER.check_needs_rehash(stored)
