"""partnerloop.commissions.rules.amount_for: commission from the rule and the NET order amount."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerloop.commissions.rules import Rule, amount_for
from partnerloop.core.money import MAX_MINOR


def half_even(value: Fraction) -> int:
    whole, rest = divmod(value.numerator, value.denominator)
    if 2 * rest > value.denominator or (2 * rest == value.denominator and whole % 2 == 1):
        whole += 1
    return whole


def percent(rate: str) -> Rule:
    return Rule(type="percentage", value=Decimal(rate))


def fixed(amount_minor: int) -> Rule:
    return Rule(type="fixed", value=Decimal(amount_minor))


# --- exact values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "gross", "net", "expected"),
    [
        ("10", 10000, 10000, 1000),
        ("10", 12345, 12345, 1234),  # 1234.5 -> even neighbour
        ("10", 1235, 1235, 124),  # 123.5 -> even neighbour
        ("7.5", 1999, 1999, 150),  # 149.925
        ("12.5", 10000, 6000, 750),  # partial refund: rate of the net amount
        ("33.3333", 100, 100, 33),  # 33.3333
        ("100", 4999, 4999, 4999),
        ("0", 10000, 10000, 0),
        ("10", 10000, 0, 0),  # full refund
    ],
)
def test_percentage_rule(rate: str, gross: int, net: int, expected: int) -> None:
    assert amount_for(percent(rate), gross_minor=gross, net_minor=net) == expected


@pytest.mark.parametrize(
    ("value", "gross", "net", "expected"),
    [
        (500, 10000, 10000, 500),
        (500, 10000, 5000, 250),  # half refunded: half the commission
        (500, 10000, 3333, 167),  # 166.65
        (500, 10000, 0, 0),  # fully refunded: nothing
        (1, 2, 1, 0),  # 0.5 -> even neighbour 0
        (3, 2, 1, 2),  # 1.5 -> even neighbour 2
        (1000, 3, 1, 333),  # 333.33
        (1000, 3, 2, 667),  # 666.67
        (500, 0, 0, 500),  # a free order (lead, trial) still earns the fixed amount
    ],
)
def test_fixed_rule(value: int, gross: int, net: int, expected: int) -> None:
    assert amount_for(fixed(value), gross_minor=gross, net_minor=net) == expected


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("gross", "net"), [(100, 101), (0, 1), (100, -1), (0, -1)])
@pytest.mark.parametrize("rule", [percent("10"), fixed(500)])
def test_net_outside_zero_to_gross_is_refused(rule: Rule, gross: int, net: int) -> None:
    with pytest.raises(ValueError, match="net amount must lie between 0 and the gross amount"):
        amount_for(rule, gross_minor=gross, net_minor=net)


@pytest.mark.parametrize("type_", ["tiered", "Percentage", "FIXED", ""])
def test_an_unknown_rule_type_is_refused(type_: str) -> None:
    rule = Rule(type=type_, value=Decimal("10"))

    with pytest.raises(ValueError, match=f"unknown rule type {type_!r}"):
        amount_for(rule, gross_minor=1000, net_minor=1000)


def test_rule_round_trips_through_storage() -> None:
    rule = Rule.from_stored("percentage", "7.5")

    assert rule == percent("7.5")
    assert rule.stored_value() == "7.5"
    assert Rule.from_stored("fixed", fixed(500).stored_value()) == fixed(500)


# --- properties --------------------------------------------------------------------------

rules = st.one_of(
    st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False).map(
        lambda rate: Rule(type="percentage", value=rate)
    ),
    st.integers(min_value=0, max_value=10**9).map(fixed),
)


@st.composite
def gross_and_two_nets(draw: st.DrawFn) -> tuple[int, int, int]:
    gross = draw(st.integers(min_value=0, max_value=MAX_MINOR))
    first = draw(st.integers(min_value=0, max_value=gross))
    second = draw(st.integers(min_value=0, max_value=gross))
    return gross, min(first, second), max(first, second)


@given(rule=rules, amounts=gross_and_two_nets())
def test_amount_lies_between_zero_and_the_unrefunded_amount(
    rule: Rule, amounts: tuple[int, int, int]
) -> None:
    gross, net, _ = amounts

    partial = amount_for(rule, gross_minor=gross, net_minor=net)
    whole = amount_for(rule, gross_minor=gross, net_minor=gross)

    assert 0 <= partial <= whole


@given(rule=rules, amounts=gross_and_two_nets())
def test_amount_grows_with_the_net_amount(rule: Rule, amounts: tuple[int, int, int]) -> None:
    gross, smaller, larger = amounts

    low = amount_for(rule, gross_minor=gross, net_minor=smaller)
    high = amount_for(rule, gross_minor=gross, net_minor=larger)

    assert low <= high


@given(rule=rules, gross=st.integers(min_value=1, max_value=MAX_MINOR))
def test_a_full_refund_leaves_nothing(rule: Rule, gross: int) -> None:
    assert amount_for(rule, gross_minor=gross, net_minor=0) == 0


@given(
    value=st.integers(min_value=0, max_value=10**9),
    gross=st.integers(min_value=0, max_value=MAX_MINOR),
)
def test_a_fixed_rule_on_an_unrefunded_order_is_the_fixed_amount(value: int, gross: int) -> None:
    assert amount_for(fixed(value), gross_minor=gross, net_minor=gross) == value


@given(
    rate=st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
    amounts=gross_and_two_nets(),
)
def test_a_percentage_is_exact_and_rounded_once(
    rate: Decimal, amounts: tuple[int, int, int]
) -> None:
    gross, net, _ = amounts

    result = amount_for(Rule(type="percentage", value=rate), gross_minor=gross, net_minor=net)

    assert result == half_even(Fraction(net) * Fraction(rate) / 100)


@given(value=st.integers(min_value=0, max_value=10**9), amounts=gross_and_two_nets())
def test_a_fixed_amount_is_scaled_exactly_and_rounded_once(
    value: int, amounts: tuple[int, int, int]
) -> None:
    gross, net, _ = amounts

    result = amount_for(fixed(value), gross_minor=gross, net_minor=net)

    expected = value if gross == 0 else half_even(Fraction(value * net, gross))
    assert result == expected
