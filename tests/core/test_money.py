"""partnerloop.core.money: parsing, formatting and THE rounding rule (ROUND_HALF_EVEN, once)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerloop.core.money import (
    MAX_MINOR,
    MoneyError,
    check_currency,
    format_amount,
    parse_amount,
    parse_rate,
    percentage_of,
    proportion_of,
    round_minor,
)


def half_even(value: Fraction) -> int:
    """Reference rounding on exact fractions, independent of Decimal and its context."""
    whole, rest = divmod(value.numerator, value.denominator)
    twice = 2 * rest
    if twice > value.denominator or (twice == value.denominator and whole % 2 == 1):
        whole += 1
    return whole


# --- parse_amount -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        # 0 decimal places
        ("1500", "JPY", 1500),
        ("0", "JPY", 0),
        # 2 decimal places
        ("19.99", "EUR", 1999),
        ("19.9", "EUR", 1990),
        ("19", "EUR", 1900),
        ("0.01", "EUR", 1),
        ("0", "EUR", 0),
        ("0.00", "EUR", 0),
        # 3 decimal places
        ("1.234", "KWD", 1234),
        ("1.2", "KWD", 1200),
        ("0.005", "KWD", 5),
        # 4 decimal places
        ("1.2345", "CLF", 12345),
    ],
)
def test_parse_amount_gives_minor_units(text: str, currency: str, expected: int) -> None:
    # Given a well-formed amount / When parsed / Then it is the exact number of minor units
    assert parse_amount(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "currency", "places", "given_places"),
    [
        ("1500.0", "JPY", "0 decimal places", 1),
        ("0.001", "EUR", "2 decimal places", 3),
        ("19.999", "EUR", "2 decimal places", 3),
        ("1.2345", "KWD", "3 decimal places", 4),
    ],
)
def test_parse_amount_refuses_more_decimals_than_the_currency_has(
    text: str, currency: str, places: str, given_places: int
) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount(text, currency)

    assert caught.value.code == "invalid_amount"
    assert caught.value.reason == f"{currency} has {places}; {text!r} has {given_places}."
    assert str(caught.value) == caught.value.reason


@pytest.mark.parametrize(
    "text",
    [
        "-1",  # sign
        "-0.01",
        "+1",
        "1e3",  # exponent
        "1E3",
        "1.5e2",
        "1,000",  # thousands separators
        "1,00",
        "1.000,00",
        "1_000",
        "1'000",
        "1 000",  # whitespace
        " 1",
        "1 ",
        "\t1",
        "",
        "1.",  # malformed decimals
        ".5",
        "1.2.3",
        "01",  # leading zeros
        "00.50",
        "0x10",
        "NaN",
        "Infinity",
        "\uff11\uff12",  # full-width digits
        "\u0661\u0662",  # Arabic-Indic digits
        "19.99 EUR",
        "€19.99",
    ],
)
def test_parse_amount_refuses_anything_but_a_plain_decimal(text: str) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount(text, "EUR")

    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize("text", ["19.99\n", "1\n"])
def test_parse_amount_refuses_a_trailing_newline(text: str) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount(text, "EUR")

    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize("currency", ["eur", "Eur", "EURO", "EU", "XAU", "XXX", "", " EUR"])
def test_parse_amount_refuses_unknown_currency_codes(currency: str) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount("1", currency)

    assert caught.value.code == "unknown_currency"


def test_parse_amount_accepts_max_minor_and_refuses_one_more() -> None:
    # Given the largest amount partnerloop accepts, written in EUR and in JPY
    assert parse_amount("10000000000000.00", "EUR") == MAX_MINOR
    assert parse_amount("1000000000000000", "JPY") == MAX_MINOR

    # When one minor unit more is parsed / Then it is refused as too large
    for text, currency in [("10000000000000.01", "EUR"), ("1000000000000001", "JPY")]:
        with pytest.raises(MoneyError) as caught:
            parse_amount(text, currency)
        assert caught.value.code == "amount_too_large"


def test_parse_amount_refuses_a_huge_number() -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount("9" * 40, "EUR")

    assert caught.value.code == "amount_too_large"


# --- format_amount, check_currency ----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [
        (1999, "EUR", "19.99"),
        (5, "EUR", "0.05"),
        (0, "EUR", "0.00"),
        (-50, "EUR", "-0.50"),
        (1500, "JPY", "1500"),
        (0, "JPY", "0"),
        (-7, "JPY", "-7"),
        (1234, "KWD", "1.234"),
        (5, "KWD", "0.005"),
        (12345, "CLF", "1.2345"),
        (MAX_MINOR, "EUR", "10000000000000.00"),
    ],
)
def test_format_amount(amount_minor: int, currency: str, expected: str) -> None:
    assert format_amount(amount_minor, currency) == expected


def test_format_amount_refuses_an_unknown_currency() -> None:
    with pytest.raises(MoneyError) as caught:
        format_amount(100, "eur")

    assert caught.value.code == "unknown_currency"


@pytest.mark.parametrize("code", ["EUR", "JPY", "KWD", "USD", "CLF"])
def test_check_currency_accepts_iso_codes(code: str) -> None:
    assert check_currency(code) == code


@pytest.mark.parametrize("code", ["eur", "usd", "ABC", "E", "EUROS"])
def test_check_currency_refuses_others(code: str) -> None:
    with pytest.raises(MoneyError) as caught:
        check_currency(code)

    assert caught.value.code == "unknown_currency"
    assert repr(code) in caught.value.reason


@given(
    amount_minor=st.integers(min_value=0, max_value=MAX_MINOR),
    currency=st.sampled_from(["JPY", "EUR", "USD", "KWD", "BHD", "CLF"]),
)
def test_parse_inverts_format(amount_minor: int, currency: str) -> None:
    assert parse_amount(format_amount(amount_minor, currency), currency) == amount_minor


# --- parse_rate --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10", "10"), ("7.5", "7.5"), ("0", "0"), ("100", "100"), ("0.0001", "0.0001")],
)
def test_parse_rate(text: str, expected: str) -> None:
    assert parse_rate(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text",
    ["abc", "", "10%", "-1", "-0.0001", "100.0001", "101", "NaN", "Infinity", "0.00001", "1e-5"],
)
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_rate(text)

    assert caught.value.code == "invalid_rate"


# --- THE rounding rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.5", 2),
        ("3.5", 4),
        ("0.5", 0),
        ("1.5", 2),
        ("-2.5", -2),
        ("2.5000001", 3),
        ("2.4999999", 2),
        ("7", 7),
    ],
)
def test_round_minor_rounds_half_to_even(value: str, expected: int) -> None:
    assert round_minor(Decimal(value)) == expected


@pytest.mark.parametrize(
    ("amount_minor", "rate", "expected"),
    [
        (12345, "10", 1234),  # 1234.5 -> even neighbour 1234
        (1235, "10", 124),  # 123.5 -> even neighbour 124
        (1225, "10", 122),  # 122.5 -> 122
        (12346, "10", 1235),  # 1234.6
        (12344, "10", 1234),  # 1234.4
        (1999, "7.5", 150),  # 149.925
        (1, "50", 0),  # 0.5 -> 0
        (3, "50", 2),  # 1.5 -> 2
        (300, "0.5", 2),  # 1.5 -> 2
        (10000, "0.0001", 0),  # 0.01
        (10000, "100", 10000),
        (0, "10", 0),
        (MAX_MINOR, "99.9999", 999999000000000),
    ],
)
def test_percentage_of(amount_minor: int, rate: str, expected: int) -> None:
    assert percentage_of(amount_minor, Decimal(rate)) == expected


@pytest.mark.parametrize(
    ("amount_minor", "numerator", "denominator", "expected"),
    [
        (1000, 1, 3, 333),  # 333.33
        (1000, 2, 3, 667),  # 666.67
        (5, 1, 2, 2),  # 2.5 -> 2
        (7, 1, 2, 4),  # 3.5 -> 4
        (1000, 0, 7, 0),
        (1000, 7, 7, 1000),
        (1000, 1, 0, 0),  # denominator 0: nothing to share
        (0, 0, 0, 0),
    ],
)
def test_proportion_of(amount_minor: int, numerator: int, denominator: int, expected: int) -> None:
    assert proportion_of(amount_minor, numerator, denominator) == expected


@given(
    amount_minor=st.integers(min_value=0, max_value=MAX_MINOR),
    rate=st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
)
def test_percentage_of_is_exact_then_rounded_once(amount_minor: int, rate: Decimal) -> None:
    expected = half_even(Fraction(amount_minor) * Fraction(rate) / 100)

    assert percentage_of(amount_minor, rate) == expected


@given(
    data=st.data(),
    amount_minor=st.integers(min_value=0, max_value=10**11),
    denominator=st.integers(min_value=1, max_value=MAX_MINOR),
)
def test_proportion_of_is_exact_then_rounded_once(
    data: st.DataObject, amount_minor: int, denominator: int
) -> None:
    numerator = data.draw(st.integers(min_value=0, max_value=denominator))

    result = proportion_of(amount_minor, numerator, denominator)

    assert result == half_even(Fraction(amount_minor * numerator, denominator))


def test_proportion_of_stays_exact_for_amounts_near_max_minor() -> None:
    # Given an exact half: 999999999999009 * 666666666666005 / 666666666666006
    #   == 999999999999007.5, whose even neighbour is ...008
    amount, numerator, denominator = 999999999999009, 666666666666005, 666666666666006
    assert Fraction(amount * numerator, denominator) == Fraction(1999999999998015, 2)

    # When / Then
    assert proportion_of(amount, numerator, denominator) == 999999999999008
