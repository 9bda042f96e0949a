"""OAuth 2.0's refresh-token grant (RFC 6749 section 6), shared by the CRM connectors.

An OAuth app's access token is renewed with its refresh token before a call when
it is missing or expires within a minute (`expires_soon`), and once when the
vendor answers 401, after which that call is repeated once (`Tokens`).

`refresh` is one renewal: a form-encoded `grant_type=refresh_token` POST to the
vendor's token URL, whose answer {access_token, refresh_token?, expires_in?, ...}
becomes the new credentials (`renewed`): every key kept, the access_token
replaced, the refresh_token replaced only when the vendor rotates it, expires_at
= now + expires_in (dropped when the answer gives no believable lifetime: a 401
will tell). A failed renewal is an Outcome: refused (any 4xx but 429) is
permanent, "reconnect <Vendor>: <the vendor's reason>"; the token endpoint down
or making no sense (5xx, 429, other statuses, a 2xx without a token, a timeout,
no connection) is retried. Nothing of the token endpoint's answer but that
reason reaches the attempt log: it holds tokens.

Each connector keeps what differs: its token URL, how the client authenticates
(client_id and client_secret in the form, or HTTP Basic), the shape of its error
body (`message_of`), and what else it keeps from the answer (`extra`, e.g.
Pipedrive's api_domain). `check_app` and `check_expires_at` are the credential
checks of a connector that takes an OAuth app.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx

from partnerloop.core.clock import parse_datetime
from partnerloop.core.errors import InvalidInput
from partnerloop.core.http import retry_after_seconds
from partnerloop.integrations.crm import Verdict
from partnerloop.integrations.writeback import json_object
from partnerloop.sync.worker import Outcome

APP_FIELDS = ("refresh_token", "client_id", "client_secret")
# Renew a token this close to its expiry: a call started just before it runs out
# would otherwise be refused halfway through a batch.
REFRESH_MARGIN_SECONDS = 60.0
MAX_LIFETIME_SECONDS = 10 * 365 * 86400  # an expires_in beyond this is not believed

_R = TypeVar("_R")


def is_app(credentials: Mapping[str, str]) -> bool:
    """Whether the credentials are an OAuth app's (refresh_token, client_id and
    client_secret, all non-empty): its access token can be renewed."""
    return all(credentials.get(name) for name in APP_FIELDS)


def expires_soon(
    credentials: Mapping[str, str], now: datetime, *, margin: float = REFRESH_MARGIN_SECONDS
) -> bool:
    """Whether to renew the access token before a call: there is none, or its
    `expires_at` (ISO 8601) is at most `margin` seconds after `now`, or does not
    parse. Without an expires_at the token is used as it is: a 401 will tell."""
    if not credentials.get("access_token"):
        return True
    expires_at = credentials.get("expires_at")
    if not expires_at:
        return False
    try:
        return parse_datetime(expires_at) - now <= timedelta(seconds=margin)
    except ValueError:
        return True


def renewed(
    credentials: Mapping[str, str], answer: Mapping[str, Any], *, now: datetime
) -> dict[str, str]:
    """The credentials after a token answer that holds an access_token: every
    key kept, access_token replaced, refresh_token replaced when the answer
    rotates it, expires_at = now + expires_in (dropped when there is no
    believable expires_in: more than 0 and at most MAX_LIFETIME_SECONDS)."""
    updated = {**credentials, "access_token": str(answer["access_token"])}
    rotated = answer.get("refresh_token")
    if isinstance(rotated, str) and rotated:
        updated["refresh_token"] = rotated
    lifetime = answer.get("expires_in")
    if (
        isinstance(lifetime, int | float)
        and not isinstance(lifetime, bool)
        and 0 < lifetime <= MAX_LIFETIME_SECONDS
    ):
        updated["expires_at"] = (now + timedelta(seconds=lifetime)).isoformat()
    else:
        updated.pop("expires_at", None)
    return updated


def refresh(
    client: httpx.Client,
    token_url: str,
    *,
    form: Mapping[str, str],
    auth: tuple[str, str] | None = None,
    credentials: Mapping[str, str],
    now: datetime,
    vendor: str,
    message_of: Callable[[Mapping[str, Any], int], str],
    extra: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None,
) -> dict[str, str] | Outcome:
    """Renew the access token with credentials["refresh_token"]: the new
    credentials (see `renewed`, plus what `extra` takes from the answer), or
    the Outcome of a failed renewal.

    `form`: fields sent besides grant_type and refresh_token (the client's id
    and secret, when it authenticates in the form); `auth`: HTTP Basic
    (client_id, client_secret) instead. `message_of(answer, status)` is the
    vendor's reason for a refusal, from its JSON error body ({} when it has
    none), after "reconnect <vendor>: "."""
    data = {"grant_type": "refresh_token", "refresh_token": credentials["refresh_token"], **form}
    try:
        response = client.post(
            token_url,
            data=data,
            auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth,
            headers={"Accept": "application/json"},
        )
    except httpx.TimeoutException:
        return Outcome(ok=False, error=f"{vendor}'s token endpoint did not answer in time")
    except httpx.HTTPError as error:
        return Outcome(
            ok=False, error=f"could not reach {vendor}'s token endpoint: {type(error).__name__}"
        )
    status = response.status_code
    answer = json_object(response)  # never in the attempt log: it holds tokens
    token = answer.get("access_token")
    success = 200 <= status < 300
    if success and isinstance(token, str) and token:
        updated = renewed(credentials, answer, now=now)
        updated.update(extra(answer) if extra is not None else {})
        return updated
    if 400 <= status < 500 and status != 429:
        return Outcome(
            ok=False,
            error=f"reconnect {vendor}: {message_of(answer, status)}",
            permanent=True,
            status_code=status,
        )
    problem = " without an access_token" if success else ""
    return Outcome(
        ok=False,
        error=f"{vendor}'s token endpoint answered {status}{problem}",
        retry_after=retry_after_seconds(response),
        status_code=status,
    )


def error_reason(answer: Mapping[str, Any], status: int) -> str:
    """RFC 6749's error answer (section 5.2) as "<error_description> (<error>)";
    either missing: the other one, or HTTP <status>, stands in."""
    code = str(answer.get("error") or f"HTTP {status}")
    return f"{answer.get('error_description') or code} ({code})"


class Tokens(ABC):
    """The credentials of one delivery or read, an OAuth app's access token
    renewed on the way by `renewal` (the connector's): before a call when it
    expires soon (unless `ahead` is off: renewed on a 401 only), and once on a
    401, after which that call is repeated once."""

    def __init__(self, credentials: Mapping[str, str], now: datetime, *, ahead: bool = True):
        self.credentials = dict(credentials)
        self.now = now
        self.ahead = ahead
        self.renewed = False  # the credentials changed: hand them back to be stored
        self._renewed_after_401 = False

    @abstractmethod
    def renewal(self) -> dict[str, str]:
        """The renewed credentials (usually `refresh`'s); raises the connector's
        own exception, carrying the outcome, when the renewal fails."""

    def authorized(self, send: Callable[[], _R]) -> _R:
        """`send()` (which reads `credentials`) with a valid token. Raises what
        `renewal` raises."""
        if self.ahead and expires_soon(self.credentials, self.now):
            self._renew()
        response = send()
        unauthorized = isinstance(response, httpx.Response) and response.status_code == 401
        if unauthorized and not self._renewed_after_401:
            # The token was revoked or expired early: renew once, repeat once.
            self._renewed_after_401 = True
            self._renew()
            response = send()
        return response

    def with_credentials(self, verdict: Verdict) -> Verdict:
        """The verdict with the renewed credentials to be stored, if any."""
        return replace(verdict, credentials=dict(self.credentials)) if self.renewed else verdict

    def _renew(self) -> None:
        self.credentials = self.renewal()
        self.renewed = True


def check_app(credentials: Mapping[str, str], vendor: str) -> bool:
    """Whether the credentials give an OAuth app; raises InvalidInput naming the
    first field missing when only some of its fields are given."""
    given = [name for name in APP_FIELDS if credentials.get(name)]
    missing = [name for name in APP_FIELDS if not credentials.get(name)]
    if given and missing:
        raise InvalidInput(
            f"A {vendor} OAuth app needs refresh_token, client_id and client_secret "
            f"together; missing: {', '.join(missing)}.",
            code="missing_credential",
            field=f"credentials.{missing[0]}",
        )
    return bool(given)


def check_expires_at(credentials: Mapping[str, str], *, app: bool, without_app: str) -> None:
    """A given expires_at goes with an OAuth app (else InvalidInput saying
    `without_app`) and is an ISO 8601 time."""
    expires_at = credentials.get("expires_at")
    if expires_at is None:
        return
    if not app:
        raise InvalidInput(without_app, code="invalid_credential", field="credentials.expires_at")
    try:
        parse_datetime(expires_at)
    except ValueError:
        raise InvalidInput(
            "credentials.expires_at must be an ISO 8601 time, e.g. 2026-11-24T12:30:00+00:00.",
            code="invalid_credential",
            field="credentials.expires_at",
        ) from None
