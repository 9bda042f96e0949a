"""partnerloop.core.http: the one Retry-After reading (RFC 9110 section 10.2.3)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerloop.core.http import MAX_RETRY_AFTER_SECONDS, retry_after_seconds

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)  # IMF-fixdate: "Fri, 14 Mar 2025 12:01:30 GMT"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("2.0", 2.0),  # Shopify
        ("0.5", 0.5),
        (" 3 ", 3.0),
        ("007", 7.0),
        ("-1", None),
        ("+5", None),
        ("inf", None),
        ("Infinity", None),
        ("-inf", None),
        ("nan", None),
        ("NaN", None),
        ("1e3", None),
        ("1_000", None),
        ("abc", None),
        ("", None),
        ("   ", None),
        ("7, 8", None),  # the header sent twice
        ("999999999", 86400.0),
        ("9" * 400, 86400.0),  # beyond float range: still just "very long"
        ("86400", 86400.0),
        ("86401", 86400.0),
    ],
)
def test_delay_seconds(value: str, seconds: float | None) -> None:
    assert retry_after_seconds({"retry-after": value}, now=NOW) == seconds


def test_an_http_date_is_the_seconds_from_now_until_then() -> None:
    later = http_date(NOW + timedelta(seconds=90))
    assert retry_after_seconds({"Retry-After": later}, now=NOW) == 90.0


def test_an_http_date_in_the_past_means_now() -> None:
    earlier = http_date(NOW - timedelta(minutes=5))
    assert retry_after_seconds({"Retry-After": earlier}, now=NOW) == 0.0


def test_an_http_date_years_ahead_is_capped_at_a_day() -> None:
    ahead = http_date(NOW + timedelta(days=3 * 365))
    assert retry_after_seconds({"Retry-After": ahead}, now=NOW) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 14 Mar 2025 12:01:30 GMT",  # IMF-fixdate
        "Friday, 14-Mar-25 12:01:30 GMT",  # obsolete RFC 850
        "Fri Mar 14 12:01:30 2025",  # obsolete asctime (no zone: GMT)
    ],
)
def test_every_http_date_format_is_read(value: str) -> None:
    assert retry_after_seconds({"retry-after": value}, now=NOW) == 90.0


def test_a_naive_now_is_utc() -> None:
    later = http_date(NOW + timedelta(seconds=90))
    naive = NOW.replace(tzinfo=None)
    assert retry_after_seconds({"retry-after": later}, now=naive) == 90.0


def test_an_impossible_date_is_garbage() -> None:
    assert retry_after_seconds({"retry-after": "Fri, 31 Feb 2025 12:00:00 GMT"}, now=NOW) is None


def test_missing_is_none() -> None:
    assert retry_after_seconds({}, now=NOW) is None
    assert retry_after_seconds({"x-ratelimit-reset": "30"}, now=NOW) is None


def test_a_response_and_its_headers_are_read_case_insensitively() -> None:
    response = httpx.Response(429, headers={"Retry-After": "7"})
    assert retry_after_seconds(response) == 7.0
    assert retry_after_seconds(response.headers) == 7.0
    assert retry_after_seconds({"RETRY-AFTER": "7"}) == 7.0
    assert retry_after_seconds(httpx.Response(503)) is None


def test_another_header_of_the_same_form() -> None:
    response = httpx.Response(429, headers={"X-RateLimit-Reset": "30"})
    assert retry_after_seconds(response, header="x-ratelimit-reset") == 30.0
    assert retry_after_seconds(response) is None


@given(st.text(max_size=40))
def test_any_value_is_a_finite_wait_within_bounds_or_none(value: str) -> None:
    seconds = retry_after_seconds({"retry-after": value}, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and 0.0 <= seconds <= 86400.0)
