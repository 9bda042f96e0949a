"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP), as authenticator
apps (Google Authenticator, 1Password, Aegis, ...) make them: HMAC-SHA1, 6
digits, 30-second steps, the secret shared as base32 in an otpauth:// URI.

A code is accepted for the current step and one step either side (clock drift
and typing time), and never twice: the caller keeps the last step used and
passes it in, so a code seen over someone's shoulder is worth nothing after use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from urllib.parse import quote, urlencode

DIGITS = 6
STEP_SECONDS = 30
WINDOW = 1  # steps accepted either side of now
SECRET_BYTES = 20  # 160 bits: RFC 4226's recommended length for HMAC-SHA1


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def step_of(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def hotp(key: bytes, counter: int, *, digits: int = DIGITS) -> str:
    """RFC 4226 section 5.3: dynamic truncation of HMAC-SHA1(key, counter)."""
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def code_at(secret: str, moment: datetime, *, digits: int = DIGITS) -> str:
    return hotp(_key(secret), step_of(moment), digits=digits)


def verify(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The step the code belongs to when it is valid now and newer than `last_step`
    (store it as the new last step), else None."""
    given = code.replace(" ", "")
    if len(given) != DIGITS or not (given.isascii() and given.isdigit()):
        return None
    key = _key(secret)
    current = step_of(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue  # used already, or older than a code that was
        if hmac.compare_digest(hotp(key, step), given):
            return step
    return None


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads (shown as a QR code)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"
