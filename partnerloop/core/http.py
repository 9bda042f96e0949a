"""HTTP helpers every vendor module shares.

`retry_after_seconds` is the one reading of the `Retry-After` header (RFC 9110
section 10.2.3): either delay-seconds (a non-negative integer; decimals like
Shopify's "2.0" are accepted too) or an HTTP-date. What comes out is always a
finite number of seconds between 0 and MAX_RETRY_AFTER_SECONDS, or None when
there is nothing usable, so that a caller can never schedule an infinite, NaN
or negative wait (`timedelta(seconds=inf)` raises OverflowError).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from partnerloop.core.clock import ensure_utc, utcnow

# A vendor bug (a timestamp sent as a delay, a date years ahead) must not park a
# message for years. Waits longer than a day are cut to a day; when the vendor
# still refuses then, the sync engine's own backoff and dead-letter rules take over.
MAX_RETRY_AFTER_SECONDS = 86400.0

# delay-seconds is 1*DIGIT; an optional fraction is tolerated. Anything else that
# float() would take ("inf", "nan", "-1", "1e3", "1_0") is not a delay.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def retry_after_seconds(
    headers_or_response: httpx.Response | Mapping[str, str],
    *,
    now: datetime | None = None,
    header: str = "retry-after",
) -> float | None:
    """Seconds to wait as the `header` (default Retry-After) asks, or None.

    "7" -> 7.0, "2.0" -> 2.0; an HTTP-date -> the seconds from `now` (default:
    the current time) until then, 0.0 when it has passed; capped at
    MAX_RETRY_AFTER_SECONDS. None when the header is missing, empty, negative,
    not finite or not understood: the caller falls back to its own default.
    `header` reads another header of the same form (e.g. a rate limit's reset in
    seconds). Header names are matched case-insensitively.
    """
    headers = (
        headers_or_response.headers
        if isinstance(headers_or_response, httpx.Response)
        else headers_or_response
    )
    value = _header(headers, header)
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)  # only inf for absurdly long digit strings: capped below
    else:
        try:
            moment = parsedate_to_datetime(text)
        except (ValueError, TypeError, IndexError, OverflowError):
            return None
        # An HTTP-date is always GMT; a date without a zone is read as UTC as well.
        seconds = (ensure_utc(moment) - ensure_utc(now or utcnow())).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()  # a plain dict is case-sensitive; httpx.Headers is not
    return next((v for k, v in headers.items() if k.lower() == wanted), None)
