"""TOTP against RFC 6238's own test vectors, and the rules around them: a window
of one step either side, no code accepted twice, nothing but six digits."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from partnerloop.access import totp

# RFC 6238 appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("unix_time", "expected"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc_6238_sha1_vectors(unix_time: int, expected: str) -> None:
    moment = datetime.fromtimestamp(unix_time, tz=UTC)
    assert totp.code_at(RFC_SECRET, moment, digits=8) == expected
    # Six digits are the last six of the same number.
    assert totp.code_at(RFC_SECRET, moment) == expected[-6:]


def test_a_code_is_good_one_step_either_side_and_only_once() -> None:
    now = datetime.fromtimestamp(1234567890, tz=UTC)
    secret = totp.new_secret()
    current = totp.code_at(secret, now)
    previous = totp.code_at(secret, now - timedelta(seconds=30))
    next_one = totp.code_at(secret, now + timedelta(seconds=30))
    too_old = totp.code_at(secret, now - timedelta(seconds=60))

    step = totp.verify(secret, current, now=now, last_step=None)
    assert step == totp.step_of(now)
    assert totp.verify(secret, current, now=now, last_step=step) is None  # replayed
    assert totp.verify(secret, previous, now=now, last_step=step) is None  # older than used
    assert totp.verify(secret, next_one, now=now, last_step=step) == step + 1
    assert totp.verify(secret, previous, now=now, last_step=None) == step - 1
    assert totp.verify(secret, too_old, now=now, last_step=None) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"])
def test_anything_but_six_digits_is_refused(code: str) -> None:
    assert totp.verify(RFC_SECRET, code, now=datetime.now(UTC), last_step=None) is None


def test_a_code_typed_with_a_space_still_counts() -> None:
    now = datetime.fromtimestamp(1111111111, tz=UTC)
    code = totp.code_at(RFC_SECRET, now)
    assert totp.verify(RFC_SECRET, f"{code[:3]} {code[3:]}", now=now, last_step=None) is not None


def test_new_secrets_are_160_bits_and_the_uri_is_what_apps_read() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, account="ada@shop.example", issuer="partnerloop")
    parts = urlsplit(uri)

    assert len(base64.b32decode(secret)) == 20
    assert secret != totp.new_secret()
    assert (parts.scheme, parts.netloc, parts.path) == (
        "otpauth",
        "totp",
        "/partnerloop:ada@shop.example",
    )
    assert parse_qs(parts.query) == {
        "secret": [secret],
        "issuer": ["partnerloop"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
