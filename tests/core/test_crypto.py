"""partnerloop.core.crypto: AES-GCM field encryption, key rotation, blind indexes, tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerloop.core.crypto import (
    DecryptionError,
    FieldCipher,
    constant_time_equal,
    hash_token,
    new_token,
    normalise_email,
)

OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(100, 132))
EMAIL = "alice@example.com"
FIELD = "affiliate.email"


def _replace_char(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


# --- encrypt / decrypt -------------------------------------------------------------------


@given(plaintext=st.text())
def test_decrypt_inverts_encrypt(plaintext: str) -> None:
    cipher = FieldCipher(OLD_KEY)

    token = cipher.encrypt(plaintext, field=FIELD)

    assert cipher.decrypt(token, field=FIELD) == plaintext


def test_ciphertext_names_version_and_key_and_hides_the_plaintext() -> None:
    cipher = FieldCipher(OLD_KEY)

    token = cipher.encrypt(EMAIL, field=FIELD)

    version, key_id, body = token.split(".")
    assert version == "v1"
    assert len(key_id) == 8
    assert "alice" not in body
    assert "=" not in body  # unpadded base64url: safe in URLs and text columns


def test_two_encryptions_of_the_same_value_differ() -> None:
    cipher = FieldCipher(OLD_KEY)

    first = cipher.encrypt(EMAIL, field=FIELD)
    second = cipher.encrypt(EMAIL, field=FIELD)

    assert first != second
    assert cipher.decrypt(first, field=FIELD) == cipher.decrypt(second, field=FIELD) == EMAIL


def test_a_second_cipher_with_the_same_key_decrypts() -> None:
    token = FieldCipher(OLD_KEY).encrypt(EMAIL, field=FIELD)

    assert FieldCipher(OLD_KEY).decrypt(token, field=FIELD) == EMAIL


def test_decrypting_with_another_field_fails() -> None:
    # Given an affiliate's e-mail, copied into the customer e-mail column
    cipher = FieldCipher(OLD_KEY)
    token = cipher.encrypt(EMAIL, field="affiliate.email")

    with pytest.raises(DecryptionError):
        cipher.decrypt(token, field="customer.email")


@pytest.mark.parametrize("position", ["first", "middle", "tag"])
def test_a_tampered_body_fails_to_decrypt(position: str) -> None:
    cipher = FieldCipher(OLD_KEY)
    prefix, body = cipher.encrypt(EMAIL, field=FIELD).rsplit(".", 1)
    index = {"first": 0, "middle": len(body) // 2, "tag": len(body) - 5}[position]

    with pytest.raises(DecryptionError):
        cipher.decrypt(f"{prefix}.{_replace_char(body, index)}", field=FIELD)


@pytest.mark.parametrize("cut", [1, 2, 4, 16])
def test_a_truncated_body_fails_to_decrypt(cut: int) -> None:
    cipher = FieldCipher(OLD_KEY)
    token = cipher.encrypt(EMAIL, field=FIELD)

    with pytest.raises(DecryptionError):
        cipher.decrypt(token[:-cut], field=FIELD)


@pytest.mark.parametrize("shape", ["length_1_mod_4", "empty", "short"])
def test_a_malformed_body_raises_decryption_error(shape: str) -> None:
    cipher = FieldCipher(OLD_KEY)
    token = cipher.encrypt(EMAIL, field=FIELD)  # body: 45 bytes = 60 base64 characters
    prefix, body = token.rsplit(".", 1)
    bad = {"length_1_mod_4": body[:-3], "empty": "", "short": "AAAA"}[shape]

    with pytest.raises(DecryptionError):
        cipher.decrypt(f"{prefix}.{bad}", field=FIELD)


@pytest.mark.parametrize(
    "token", ["", "garbage", "v1.only-two", "v2.ad0e117f.AAAA", "v1.00000000.AAAAAAAAAAAAAAAA"]
)
def test_what_is_not_our_ciphertext_fails_to_decrypt(token: str) -> None:
    with pytest.raises(DecryptionError):
        FieldCipher(OLD_KEY).decrypt(token, field=FIELD)


def test_another_version_tag_fails_to_decrypt() -> None:
    cipher = FieldCipher(OLD_KEY)
    token = cipher.encrypt(EMAIL, field=FIELD)

    with pytest.raises(DecryptionError):
        cipher.decrypt("v2" + token[2:], field=FIELD)


def test_optional_variants_pass_none_through() -> None:
    cipher = FieldCipher(OLD_KEY)

    assert cipher.encrypt_optional(None, field=FIELD) is None
    token = cipher.encrypt_optional(EMAIL, field=FIELD)
    assert token is not None
    assert cipher.decrypt(token, field=FIELD) == EMAIL


# --- key rotation ------------------------------------------------------------------------


def test_a_rotated_cipher_still_decrypts_old_ciphertexts_and_flags_them() -> None:
    # Given a value encrypted under the old key
    old_token = FieldCipher(OLD_KEY).encrypt(EMAIL, field=FIELD)

    # When the master key is rotated, keeping the old key for decryption
    rotated = FieldCipher(NEW_KEY, old_master_keys=[OLD_KEY])

    # Then the old value still opens, and is marked for re-encryption
    assert rotated.decrypt(old_token, field=FIELD) == EMAIL
    assert rotated.needs_reencryption(old_token) is True
    # while a value encrypted now is under the new key and needs nothing
    new_token_ = rotated.encrypt(EMAIL, field=FIELD)
    assert rotated.needs_reencryption(new_token_) is False
    assert new_token_.split(".")[1] != old_token.split(".")[1]


def test_a_cipher_without_the_old_key_cannot_decrypt_old_ciphertexts() -> None:
    old_token = FieldCipher(OLD_KEY).encrypt(EMAIL, field=FIELD)

    with pytest.raises(DecryptionError):
        FieldCipher(NEW_KEY).decrypt(old_token, field=FIELD)


def test_the_old_cipher_cannot_decrypt_what_the_new_key_encrypted() -> None:
    new_token_ = FieldCipher(NEW_KEY, old_master_keys=[OLD_KEY]).encrypt(EMAIL, field=FIELD)

    with pytest.raises(DecryptionError):
        FieldCipher(OLD_KEY).decrypt(new_token_, field=FIELD)


def test_needs_reencryption_is_false_for_the_current_key() -> None:
    cipher = FieldCipher(OLD_KEY)

    assert cipher.needs_reencryption(cipher.encrypt(EMAIL, field=FIELD)) is False


# --- blind index -------------------------------------------------------------------------


def test_blind_index_is_deterministic_across_instances() -> None:
    first = FieldCipher(OLD_KEY).blind_index(EMAIL, field=FIELD)
    second = FieldCipher(OLD_KEY).blind_index(EMAIL, field=FIELD)

    assert first == second


def test_blind_index_is_stable_for_a_known_key() -> None:
    # Stored indexes depend on this exact value: a change orphans every lookup in a database.
    index = FieldCipher(OLD_KEY).blind_index(EMAIL, field=FIELD)

    assert index == "7c5494fe0e504e87b1250512c5b584dbf4a9a5e4"


def test_blind_index_differs_per_field() -> None:
    cipher = FieldCipher(OLD_KEY)

    assert cipher.blind_index(EMAIL, field="affiliate.email") != cipher.blind_index(
        EMAIL, field="customer.email"
    )


def test_blind_index_differs_per_key_and_follows_the_current_key() -> None:
    old = FieldCipher(OLD_KEY).blind_index(EMAIL, field=FIELD)
    new = FieldCipher(NEW_KEY).blind_index(EMAIL, field=FIELD)
    rotated = FieldCipher(NEW_KEY, old_master_keys=[OLD_KEY]).blind_index(EMAIL, field=FIELD)

    assert old != new
    assert rotated == new


def test_blind_index_differs_per_value_and_does_not_contain_it() -> None:
    cipher = FieldCipher(OLD_KEY)

    index = cipher.blind_index(EMAIL, field=FIELD)

    assert index != cipher.blind_index("bob@example.com", field=FIELD)
    assert "alice" not in index
    assert "@" not in index
    assert len(index) == 40
    assert set(index) <= set("0123456789abcdef")


def test_normalise_email_trims_and_lowercases() -> None:
    assert normalise_email("  Alice@Example.COM\n") == "alice@example.com"


# --- tokens ------------------------------------------------------------------------------


def test_hash_token_is_sha256_hex() -> None:
    # FIPS 180-2 test vector for "abc"
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    assert hash_token("abc") == expected


def test_hash_token_differs_per_secret() -> None:
    assert hash_token("secret-1") != hash_token("secret-2")


def test_new_token_is_urlsafe_and_fresh() -> None:
    first, second = new_token(), new_token()

    assert len(first) == 32  # 24 bytes in unpadded base64url
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert first != second


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("abc", "abc", True),
        ("", "", True),
        ("abc", "abd", False),
        ("abc", "abcd", False),
        ("abc", "", False),
        ("clé", "clé", True),
        ("clé", "cle", False),
    ],
)
def test_constant_time_equal(a: str, b: str, expected: bool) -> None:
    assert constant_time_equal(a, b) is expected


# --- deflated payloads ----------------------------------------------------------------------

LONG_JSON = (
    '{"line_items": [' + ", ".join(f'{{"sku": "SKU-{n}", "qty": 1}}' for n in range(200)) + "]}"
)


@given(plaintext=st.text(min_size=0, max_size=3000))
def test_a_deflated_encryption_decrypts_to_the_same_text(plaintext: str) -> None:
    cipher = FieldCipher(OLD_KEY)

    token = cipher.encrypt(plaintext, field=FIELD, deflate=True)

    assert cipher.decrypt(token, field=FIELD) == plaintext


def test_long_text_is_deflated_before_encryption_and_short_text_is_not() -> None:
    cipher = FieldCipher(OLD_KEY)

    deflated = cipher.encrypt(LONG_JSON, field=FIELD, deflate=True)
    plain = cipher.encrypt(LONG_JSON, field=FIELD)
    short = cipher.encrypt(EMAIL, field=FIELD, deflate=True)

    assert [token[:3] for token in (deflated, plain, short)] == ["z1.", "v1.", "v1."]
    assert len(deflated) * 4 < len(plain)  # repetitive JSON shrinks several times
    assert cipher.decrypt(deflated, field=FIELD) == cipher.decrypt(plain, field=FIELD) == LONG_JSON


def test_a_tampered_deflated_token_fails_to_decrypt() -> None:
    cipher = FieldCipher(OLD_KEY)
    token = cipher.encrypt(LONG_JSON, field=FIELD, deflate=True)

    with pytest.raises(DecryptionError):
        cipher.decrypt(_replace_char(token, len(token) // 2), field=FIELD)
    # The version tag is bound too: the same body read as not deflated is refused,
    # and so is a deflated body presented under another field.
    with pytest.raises(DecryptionError):
        cipher.decrypt("v1." + token[3:], field=FIELD)
    with pytest.raises(DecryptionError):
        cipher.decrypt("z1." + cipher.encrypt(LONG_JSON, field=FIELD)[3:], field=FIELD)
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, field="another.field")


# LONG_JSON under OLD_KEY as partnerloop wrote it before ISA-L (zlib.compress, level 1,
# commit 8303596): stored payloads of that time must keep opening.
ZLIB_TOKEN = (
    "z1.ad0e117f.wikjCBM_50S5r7riehmby3KXQv-3q3Az5rsH-MUN36KWhhJgPIBgsfJERynoH7eq50-7"
    "YWQGVupeS0FZLgqk4-tPEaBRysT2gCZbXxShnhNvK8Z-41WY1_a1gInE8xqaHMjxy_CPdf6CPVCrmC4F"
    "UzHwQj2-WqtGfouT4yJfNGCZCzRD8AmtkBAHFCJpmHwm1C9nPsyajACYyaZCCEoAWjZN5myHkJHnaED1"
    "d4wiRJZSmi00c-AZz2--KlqssEVkDSvTHr-MQgoiBenVscRtef3qrQf2MFYnZOTBZgweDxIDACFg-YJV"
    "brdNIk6xurhB3Q--zEcark3QGj2_rWMJd0Ik0IcpVm8Urk9iUtVhliKO7gMM_K_0R7jUK7ImpUqZOylc"
    "vNAXyLOPucVRrhdw_CU8c4Bx_NqQZ1WSVEgrXB2rs0cZ_B7THDznvQsW4hXyHTDBIgC0fl9QsV00_GT5"
    "ntiF8FYCWbEHc2ns8y1dDBtBK_DCZLf4DSVy_2q9fRiEbs50kIYqZmEq4ha75mEsWyBV5ZrBAuUFZmgE"
    "QOq3BGIdEzbOlkeovMsMf_HZppEf6r4axICZ6XDchsDYBAhSuMH2e5uLhVtJqQV7FBXKBtSI04spHAge"
    "BPZbz2BubAS_EEdOE9MdQlZVrXYRkzeufp0qexNaB3YO5oZiiZF0H8uO11BBA0uVcOow8hqdM52pmX-a"
    "fJqRG5M"
)


def test_a_token_deflated_by_zlib_before_still_decrypts() -> None:
    cipher = FieldCipher(OLD_KEY)

    assert cipher.decrypt(ZLIB_TOKEN, field=FIELD) == LONG_JSON
    # Same format, same size within a few bytes: only the speed changed
    ours = cipher.encrypt(LONG_JSON, field=FIELD, deflate=True)
    assert ours[:12] == ZLIB_TOKEN[:12]  # z1.<key id>.
    assert abs(len(ours) - len(ZLIB_TOKEN)) < 40


def test_a_rotated_cipher_decrypts_deflated_tokens_of_the_old_key() -> None:
    old = FieldCipher(OLD_KEY)
    token = old.encrypt(LONG_JSON, field=FIELD, deflate=True)
    rotated = FieldCipher(NEW_KEY, old_master_keys=[OLD_KEY])

    assert rotated.decrypt(token, field=FIELD) == LONG_JSON
    assert rotated.needs_reencryption(token)
