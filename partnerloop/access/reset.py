"""Password reset links: signed, expiring, single-use, with no table.

The token names the account and an expiry, signed with a key derived from the
master key over the account's current password hash. So it cannot be forged
or stretched, it dies with its expiry, and it dies once used: setting a new
password changes the hash it was signed over (and an old link for the same
account dies the same way).
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

from partnerloop.core.crypto import FieldCipher

LIFETIME = timedelta(hours=1)


def _signature(cipher: FieldCipher, kind: str, account_id: str, expires: int, secret: str) -> str:
    return cipher.blind_index(f"{account_id}.{expires}.{secret}", field=f"password_reset:{kind}")


def make_token(
    cipher: FieldCipher, *, kind: str, account_id: str, password_hash: str, now: datetime
) -> str:
    """kind: "staff" or "affiliate" (a token for one never opens the other)."""
    expires = int((now + LIFETIME).timestamp())
    signature = _signature(cipher, kind, account_id, expires, password_hash)
    return f"{account_id}.{expires}.{signature}"


def account_of(token: str) -> str | None:
    """The account a token claims to be for (not yet checked)."""
    parts = token.split(".")
    return parts[0] if len(parts) == 3 and parts[0] else None


def check_token(
    cipher: FieldCipher, token: str, *, kind: str, password_hash: str, now: datetime
) -> bool:
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[1].isascii():
        return False
    account_id, expires_text, signature = parts
    expires = int(expires_text)
    if expires <= now.timestamp():
        return False
    expected = _signature(cipher, kind, account_id, expires, password_hash)
    return hmac.compare_digest(expected.encode(), signature.encode())
