"""Field encryption (AES-256-GCM) and keyed blind indexes for personal data.

Personal data (e-mails, names, IPs) is stored only as ciphertext; equality
lookups go through a blind index: HMAC-SHA256 of the normalised value under a
key derived from the master key, so the database alone reveals neither the
value nor (without the key) a dictionary match of it.

Ciphertext format: `v1.<key id>.<base64url(nonce | ciphertext | tag)>`. The key
id lets old keys keep decrypting during a rotation. `z1.` instead of `v1.`: the
plaintext was deflated before encryption (large payloads such as webhook bodies:
a Shopify order's 11.5 KB of JSON is stored in 3 KB; compressed before, since
ciphertext does not compress). The field's name is bound
in as associated data, so a ciphertext copied into another column (an
affiliate's e-mail pasted over a customer's) fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from isal import isal_zlib  # zlib's format, ISA-L's speed

_VERSION = "v1"
_DEFLATED = "z1"
# ISA-L's level 1: zlib level 1's size (a 16 KB Shopify order: 2,970 bytes against
# 2,981) in about a quarter of its time (17 against 64 us), and the same format:
# tokens deflated by zlib before open as before.
_DEFLATE_LEVEL = 1
_DEFLATE_FROM_BYTES = 1024
_NONCE_BYTES = 12
_TAG_BYTES = 16


class DecryptionError(Exception):
    """Ciphertext that no known key opens (wrong key, tampering, wrong column)."""


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


def _bound(field: str, deflated: bool) -> bytes:
    # The associated data: the field, and for deflated tokens the version too, so a
    # token relabelled v1 <-> z1 fails to verify instead of decoding to garbage.
    return f"{field}\x00{_DEFLATED}".encode() if deflated else field.encode()


class FieldCipher:
    def __init__(self, master_key: bytes, old_master_keys: list[bytes] | None = None) -> None:
        self._current_id, current = self._key_entry(master_key)
        self._aeads: dict[str, AESGCM] = {self._current_id: current}
        for old in old_master_keys or []:
            key_id, aead = self._key_entry(old)
            self._aeads.setdefault(key_id, aead)
        # The blind index key follows the current master key: a rotation re-indexes.
        self._index_key = _derive(master_key, b"partnerloop blind index v1")

    @staticmethod
    def _key_entry(master: bytes) -> tuple[str, AESGCM]:
        enc_key = _derive(master, b"partnerloop field encryption v1")
        key_id = hashlib.sha256(enc_key).hexdigest()[:8]
        return key_id, AESGCM(enc_key)

    def encrypt(self, plaintext: str, *, field: str, deflate: bool = False) -> str:
        """`deflate`: compress first if the text is long enough for it to pay
        (kilobytes of JSON, not an e-mail)."""
        data = plaintext.encode()
        deflate = deflate and len(data) >= _DEFLATE_FROM_BYTES
        if deflate:
            data = isal_zlib.compress(data, _DEFLATE_LEVEL)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aeads[self._current_id].encrypt(nonce, data, _bound(field, deflate))
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_DEFLATED if deflate else _VERSION}.{self._current_id}.{body}"

    def encrypt_optional(self, plaintext: str | None, *, field: str) -> str | None:
        return None if plaintext is None else self.encrypt(plaintext, field=field)

    def decrypt(self, token: str, *, field: str) -> str:
        try:
            version, key_id, body = token.split(".", 2)
        except ValueError:
            raise DecryptionError("not a partnerloop ciphertext") from None
        aead = self._aeads.get(key_id)
        if version not in (_VERSION, _DEFLATED):
            raise DecryptionError(f"unknown ciphertext version {version!r}")
        if aead is None:
            raise DecryptionError(f"no key with id {key_id!r}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise DecryptionError("ciphertext is not base64") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError("ciphertext is too short")
        try:
            deflated = version == _DEFLATED
            data = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _bound(field, deflated))
        except InvalidTag:
            raise DecryptionError("ciphertext does not verify") from None
        # Authenticated above: the deflated data is ours, not an attacker's.
        return (isal_zlib.decompress(data) if deflated else data).decode()

    def blind_index(self, value: str, *, field: str) -> str:
        message = field.encode() + b"\x00" + value.encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()[:40]

    def needs_reencryption(self, token: str) -> bool:
        return token.split(".", 2)[1:2] != [self._current_id]


def normalise_email(email: str) -> str:
    return email.strip().lower()


_EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")


def looks_like_email(email: str) -> bool:
    """A plausible address (one @, a dotted domain, at most 254 characters); e-mails
    are blind-indexed in normalised form, so this is checked on that form."""
    cleaned = normalise_email(email)
    return len(cleaned) <= 254 and _EMAIL_RE.fullmatch(cleaned) is not None


def hash_token(secret: str) -> str:
    """Hash of a high-entropy secret (API key, postback token) for storage.

    SHA-256 is enough here: these are 190+ bit random strings, not passwords,
    so there is nothing to brute-force and the hot path stays cheap.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
