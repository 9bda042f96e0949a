"""partnerloop.core.ids: prefixed, time-ordered ULID-style ids."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerloop.core import ids
from partnerloop.core.ids import has_kind, new_id, timestamp_ms

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        ("program", "prg_"),
        ("affiliate", "aff_"),
        ("link", "lnk_"),
        ("coupon", "cpn_"),
        ("click", "clk_"),
        ("conversion", "cnv_"),
        ("refund", "rfd_"),
        ("customer", "cus_"),
        ("commission", "com_"),
        ("api_key", "key_"),
        ("inbound_event", "evt_"),
        ("outbox_message", "msg_"),
    ],
)
def test_new_id_has_the_kind_prefix_and_a_26_char_body(kind: str, prefix: str) -> None:
    value = new_id(kind)

    assert value[: len(prefix)] == prefix
    assert len(value) == len(prefix) + 26
    assert set(value[len(prefix) :]) <= CROCKFORD


def test_new_id_refuses_an_unknown_kind() -> None:
    with pytest.raises(KeyError):
        new_id("invoice")


def test_has_kind_accepts_its_own_kind() -> None:
    click_id = new_id("click")

    assert has_kind(click_id, "click") is True


@pytest.mark.parametrize("other", ["link", "program", "commission"])
def test_has_kind_rejects_another_kind(other: str) -> None:
    click_id = new_id("click")

    assert has_kind(click_id, other) is False


def test_has_kind_rejects_wrong_lengths() -> None:
    click_id = new_id("click")

    assert has_kind(click_id[:-1], "click") is False
    assert has_kind(click_id + "0", "click") is False
    assert has_kind("clk_", "click") is False
    assert has_kind("", "click") is False


@pytest.mark.parametrize("bad", ["I", "L", "O", "U", "a", "z", "-", "_", " ", "é"])
def test_has_kind_rejects_characters_outside_crockford_base32(bad: str) -> None:
    click_id = new_id("click")

    assert has_kind(click_id[:-1] + bad, "click") is False
    assert has_kind("clk_" + bad + click_id[5:], "click") is False


def test_has_kind_rejects_a_missing_or_different_separator() -> None:
    body = new_id("click")[4:]

    assert has_kind("clk" + body, "click") is False
    assert has_kind("clk-" + body, "click") is False
    assert has_kind("CLK_" + body, "click") is False


def test_ids_made_in_sequence_sort_in_creation_order_and_are_unique() -> None:
    # Given 10 000 ids made in a tight loop (many share a millisecond)
    made = [new_id("click") for _ in range(10_000)]

    # Then sorting them as strings keeps creation order, and none repeats
    assert sorted(made) == made
    assert len(set(made)) == len(made)


def test_timestamp_ms_is_the_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id("conversion")
    after = time.time_ns() // 1_000_000

    assert before <= timestamp_ms(value) <= after


def test_timestamp_ms_decodes_the_first_ten_characters() -> None:
    # "01ARZ3NDEK" is base 32 digits 0,1,10,24,31,3,21,13,14,19 = 1469922850259 (2016-07-30);
    # the last 16 characters are the 80 random bits and do not count.
    assert timestamp_ms("clk_01ARZ3NDEKTSV4RRFFQ69G5FAV") == 1469922850259
    assert timestamp_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV") == 1469922850259
    assert timestamp_ms("clk_" + "0" * 26) == 0
    assert timestamp_ms("clk_000000000A" + "Z" * 16) == 10


def _fake_clock(monkeypatch: pytest.MonkeyPatch, readings_ms: list[int]) -> None:
    readings = iter(readings_ms)
    clock = SimpleNamespace(time_ns=lambda: next(readings) * 1_000_000)
    monkeypatch.setattr(ids, "time", clock)


def test_same_millisecond_ids_count_up_from_the_first_random_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a clock that stands still
    _fake_clock(monkeypatch, [1_700_000_000_000] * 3)
    generator = ids._Generator()

    # When three values are made
    first, second, third = (generator.next_value() for _ in range(3))

    # Then they share the millisecond and the random part counts up by one
    assert [v >> 80 for v in (first, second, third)] == [1_700_000_000_000] * 3
    assert second == first + 1
    assert third == first + 2


def test_a_clock_that_steps_back_does_not_break_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a clock that jumps back one second between two readings
    _fake_clock(monkeypatch, [1_700_000_001_000, 1_700_000_000_000])
    generator = ids._Generator()

    # When
    first = generator.next_value()
    second = generator.next_value()

    # Then the second value keeps the later millisecond and still sorts after the first
    assert second >> 80 == 1_700_000_001_000
    assert second == first + 1


def test_random_part_overflow_moves_to_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a generator whose random part is at its maximum in the current millisecond
    _fake_clock(monkeypatch, [1_700_000_000_000])
    generator = ids._Generator()
    generator._last_ms = 1_700_000_000_000
    generator._last_rand = (1 << 80) - 1

    # When the next value is made in that same millisecond
    value = generator.next_value()

    # Then it does not wrap around to a smaller value: the clock moves on by one ms
    assert value == (1_700_000_000_001 << 80)


def _encode_five_bits_at_a_time(value: int) -> str:
    digits = []
    for _ in range(26):
        digits.append(ids._ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(digits))


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_fast_encoding_gives_the_digits_of_the_plain_one(value: int) -> None:
    assert ids._encode(value) == _encode_five_bits_at_a_time(value)


def test_encoding_edges() -> None:
    for value in (0, 1, 31, 32, 1023, 1024, (1 << 80) - 1, 1 << 80, (1 << 128) - 1):
        assert ids._encode(value) == _encode_five_bits_at_a_time(value)
    assert ids._encode(0) == "0" * 26
