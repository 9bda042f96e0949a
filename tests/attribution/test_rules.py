"""partnerloop.attribution.rules.decide: click, then coupon, then customer, then none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerloop.attribution.rules import (
    CLOCK_SKEW,
    Attribution,
    ClickEvidence,
    click_in_window,
    decide,
)

CLICKED_AT = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
COOKIE_DAYS = 30
CLICK = ClickEvidence(click_id="clk_1", affiliate_id="aff_click", clicked_at=CLICKED_AT)

BY_CLICK = Attribution(affiliate_id="aff_click", method="click", click_id="clk_1")
BY_COUPON = Attribution(affiliate_id="aff_coupon", method="coupon")
BY_CUSTOMER = Attribution(affiliate_id="aff_customer", method="customer")
BY_NOBODY = Attribution(affiliate_id=None, method="none")


def _decide(
    *,
    ordered_at: datetime,
    click: ClickEvidence | None = CLICK,
    coupon: str | None = "aff_coupon",
    customer: str | None = "aff_customer",
) -> Attribution:
    return decide(
        click=click,
        coupon_affiliate_id=coupon,
        customer_affiliate_id=customer,
        ordered_at=ordered_at,
        cookie_days=COOKIE_DAYS,
    )


def test_a_click_inside_the_window_wins_over_coupon_and_customer() -> None:
    result = _decide(ordered_at=CLICKED_AT + timedelta(hours=2))

    assert result == BY_CLICK


def test_a_click_exactly_at_the_end_of_the_window_counts() -> None:
    result = _decide(ordered_at=CLICKED_AT + timedelta(days=COOKIE_DAYS))

    assert result == BY_CLICK


def test_an_order_at_the_moment_of_the_click_counts() -> None:
    assert _decide(ordered_at=CLICKED_AT) == BY_CLICK


JUST_AFTER_WINDOW = CLICKED_AT + timedelta(days=COOKIE_DAYS, seconds=1)


def test_one_second_after_the_window_the_coupon_wins() -> None:
    assert _decide(ordered_at=JUST_AFTER_WINDOW) == BY_COUPON


def test_after_the_window_without_coupon_the_customer_wins() -> None:
    assert _decide(ordered_at=JUST_AFTER_WINDOW, coupon=None) == BY_CUSTOMER


def test_after_the_window_without_coupon_or_customer_nobody_gets_it() -> None:
    assert _decide(ordered_at=JUST_AFTER_WINDOW, coupon=None, customer=None) == BY_NOBODY


def test_without_a_click_the_coupon_wins_over_the_customer() -> None:
    assert _decide(ordered_at=CLICKED_AT, click=None) == BY_COUPON


def test_without_click_or_coupon_the_customer_wins() -> None:
    assert _decide(ordered_at=CLICKED_AT, click=None, coupon=None) == BY_CUSTOMER


def test_without_any_evidence_nobody_gets_it() -> None:
    assert _decide(ordered_at=CLICKED_AT, click=None, coupon=None, customer=None) == BY_NOBODY


def test_an_order_long_before_the_click_does_not_count_the_click() -> None:
    # Given an order stamped one second more than the allowed clock skew before the click
    ordered_at = CLICKED_AT - CLOCK_SKEW - timedelta(seconds=1)

    # Then the click is ignored: coupon, else nobody
    assert _decide(ordered_at=ordered_at) == BY_COUPON
    assert _decide(ordered_at=ordered_at, coupon=None, customer=None) == BY_NOBODY


def test_an_order_within_the_clock_skew_before_the_click_counts_the_click() -> None:
    assert _decide(ordered_at=CLICKED_AT - CLOCK_SKEW) == BY_CLICK
    assert _decide(ordered_at=CLICKED_AT - timedelta(seconds=1)) == BY_CLICK


@pytest.mark.parametrize(
    ("minutes_before_click", "expected"), [(4, BY_CLICK), (5, BY_CLICK), (6, BY_COUPON)]
)
def test_the_clock_skew_is_five_minutes(minutes_before_click: int, expected: Attribution) -> None:
    result = _decide(ordered_at=CLICKED_AT - timedelta(minutes=minutes_before_click))

    assert result == expected


def test_the_window_follows_cookie_days() -> None:
    ordered_at = CLICKED_AT + timedelta(days=7, seconds=1)

    short = decide(
        click=CLICK,
        coupon_affiliate_id=None,
        customer_affiliate_id=None,
        ordered_at=ordered_at,
        cookie_days=7,
    )
    long = decide(
        click=CLICK,
        coupon_affiliate_id=None,
        customer_affiliate_id=None,
        ordered_at=ordered_at,
        cookie_days=8,
    )

    assert short == BY_NOBODY
    assert long == BY_CLICK


@given(
    age_seconds=st.integers(
        min_value=-int(CLOCK_SKEW.total_seconds()),
        max_value=int(timedelta(days=COOKIE_DAYS).total_seconds()),
    )
)
def test_every_age_inside_the_window_counts(age_seconds: int) -> None:
    ordered_at = CLICKED_AT + timedelta(seconds=age_seconds)

    assert click_in_window(CLICK, ordered_at=ordered_at, cookie_days=COOKIE_DAYS) is True


@given(
    age_seconds=st.one_of(
        st.integers(max_value=-int(CLOCK_SKEW.total_seconds()) - 1, min_value=-(10**9)),
        st.integers(
            min_value=int(timedelta(days=COOKIE_DAYS).total_seconds()) + 1, max_value=10**9
        ),
    )
)
def test_every_age_outside_the_window_does_not(age_seconds: int) -> None:
    ordered_at = CLICKED_AT + timedelta(seconds=age_seconds)

    assert click_in_window(CLICK, ordered_at=ordered_at, cookie_days=COOKIE_DAYS) is False
    assert _decide(ordered_at=ordered_at) == BY_COUPON
