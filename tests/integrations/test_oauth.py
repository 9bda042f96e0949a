"""The OAuth 2.0 refresh-token grant the CRM connectors share
(partnerloop.integrations.oauth): when a token is renewed, what the renewed
credentials hold, how a failed renewal is classified, and the once-on-a-401
rule; renewals against a real token endpoint on loopback."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from partnerloop.core.errors import InvalidInput
from partnerloop.integrations import oauth
from partnerloop.integrations.crm import Verdict
from partnerloop.sync.worker import Outcome
from tests.support.http import Received, Reply, ScriptedServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
JSON = {"content-type": "application/json"}
TOKEN_PATH = "/oauth/token"
APP = {"refresh_token": "refresh-1", "client_id": "client-1", "client_secret": "secret-1"}


def at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat()


def answer(status: int, body: Any, **headers: str) -> Reply:
    return Reply(status, {**JSON, **headers}, json.dumps(body).encode())


def tokens(**fields: Any) -> Reply:
    return answer(200, {"token_type": "Bearer", **fields})


def reason(body: Mapping[str, Any], status: int) -> str:
    return f"{body.get('message') or 'no message'} [{body.get('error') or status}]"


@contextmanager
def token_endpoint(*replies: Reply) -> Iterator[tuple[ScriptedServer, httpx.Client]]:
    server = ScriptedServer(list(replies))
    with server.running(), httpx.Client(timeout=2) as client:
        yield server, client


def renew(
    client: httpx.Client,
    url: str,
    credentials: Mapping[str, str],
    *,
    auth: tuple[str, str] | None = None,
    extra: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None,
) -> dict[str, str] | Outcome:
    return oauth.refresh(
        client,
        url + TOKEN_PATH,
        form={} if auth else {"client_id": "client-1", "client_secret": "secret-1"},
        auth=auth,
        credentials=credentials,
        now=NOW,
        vendor="Acme",
        message_of=reason,
        extra=extra,
    )


def form_of(request: Received) -> dict[str, list[str]]:
    assert (request.method, request.path) == ("POST", TOKEN_PATH)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    return parse_qs(request.body.decode())


# --- when to renew ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_at", "soon"),
    [
        (at(-1), True),
        (at(0), True),
        (at(60), True),  # exactly the margin: renewed
        (at(60.001), False),
        (at(61), False),
        ("2026-11-24T13:00:00+01:00", True),  # 12:00 UTC: now
        ("2026-11-24T12:01:00Z", True),
        ("2026-11-24T12:01:01Z", False),
        ("not a time", True),
    ],
)
def test_a_token_expiring_within_60_seconds_is_renewed(expires_at: str, soon: bool) -> None:
    credentials = {**APP, "access_token": "a", "expires_at": expires_at}

    assert oauth.expires_soon(credentials, NOW) is soon


def test_the_margin_can_be_given() -> None:
    credentials = {"access_token": "a", "expires_at": at(300)}

    assert oauth.expires_soon(credentials, NOW, margin=300) is True
    assert oauth.expires_soon(credentials, NOW, margin=299.5) is False
    assert oauth.expires_soon(credentials, NOW, margin=0) is False


def test_a_token_without_expires_at_is_used_as_it_is() -> None:
    assert oauth.expires_soon({**APP, "access_token": "a"}, NOW) is False
    assert oauth.expires_soon({**APP, "access_token": "a", "expires_at": ""}, NOW) is False


def test_a_missing_token_is_renewed_whatever_its_expiry() -> None:
    assert oauth.expires_soon(dict(APP), NOW) is True
    assert oauth.expires_soon({**APP, "access_token": "", "expires_at": at(3600)}, NOW) is True


# --- the renewed credentials ---------------------------------------------------------


def test_a_rotated_refresh_token_replaces_the_old_one() -> None:
    before = {**APP, "access_token": "old", "expires_at": at(10), "api_domain": "https://x"}

    after = oauth.renewed(
        before, {"access_token": "new", "refresh_token": "refresh-2", "expires_in": 3600}, now=NOW
    )

    assert after == {
        "refresh_token": "refresh-2",
        "client_id": "client-1",
        "client_secret": "secret-1",
        "access_token": "new",
        "expires_at": "2026-11-24T13:00:00+00:00",
        "api_domain": "https://x",
    }
    assert before["refresh_token"] == "refresh-1"  # not changed in place


@pytest.mark.parametrize("rotated", [None, "", 42])
def test_the_old_refresh_token_is_kept_unless_a_new_one_is_given(rotated: Any) -> None:
    body = {"access_token": "new", "expires_in": 1800}
    if rotated is not None:
        body["refresh_token"] = rotated

    after = oauth.renewed({**APP, "access_token": "old"}, body, now=NOW)

    assert after == {**APP, "access_token": "new", "expires_at": "2026-11-24T12:30:00+00:00"}


def test_a_fractional_lifetime_counts() -> None:
    after = oauth.renewed(dict(APP), {"access_token": "new", "expires_in": 59.5}, now=NOW)

    assert after["expires_at"] == "2026-11-24T12:00:59.500000+00:00"


@pytest.mark.parametrize(
    "expires_in", [None, 0, -5, True, "3600", oauth.MAX_LIFETIME_SECONDS + 1, float("inf")]
)
def test_without_a_believable_expires_in_the_old_expiry_is_dropped(expires_in: Any) -> None:
    body: dict[str, Any] = {"access_token": "new"}
    if expires_in is not None:
        body["expires_in"] = expires_in

    after = oauth.renewed({**APP, "access_token": "old", "expires_at": at(5)}, body, now=NOW)

    assert after == {**APP, "access_token": "new"}  # unknown: a 401 will tell


def test_the_longest_believed_lifetime() -> None:
    after = oauth.renewed(
        {}, {"access_token": "new", "expires_in": oauth.MAX_LIFETIME_SECONDS}, now=NOW
    )

    assert after["expires_at"] == (NOW + timedelta(days=3650)).isoformat()


# --- one renewal at the token endpoint -----------------------------------------------


def test_a_renewal_posts_the_refresh_token_grant_and_keeps_every_key() -> None:
    credentials = {**APP, "access_token": "old", "expires_at": at(10), "other": "kept"}
    with token_endpoint(tokens(access_token="new", refresh_token="refresh-2", expires_in=3599)) as (
        server,
        client,
    ):
        result = renew(client, server.url, credentials)

    [request] = server.received
    assert form_of(request) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-1"],
        "client_id": ["client-1"],
        "client_secret": ["secret-1"],
    }
    assert "authorization" not in request.headers
    assert result == {
        **credentials,
        "access_token": "new",
        "refresh_token": "refresh-2",
        "expires_at": "2026-11-24T12:59:59+00:00",
    }


def test_a_client_may_authenticate_with_http_basic_and_keep_more_of_the_answer() -> None:
    with token_endpoint(tokens(access_token="new", expires_in=60, api_domain="https://acme.x")) as (
        server,
        client,
    ):
        result = renew(
            client,
            server.url,
            {**APP, "access_token": "old"},
            auth=("client-1", "secret-1"),
            extra=lambda body: {"api_domain": str(body["api_domain"])},
        )

    [request] = server.received
    assert request.body == b"grant_type=refresh_token&refresh_token=refresh-1"
    basic = base64.b64encode(b"client-1:secret-1").decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert result == {
        **APP,
        "access_token": "new",
        "expires_at": "2026-11-24T12:01:00+00:00",
        "api_domain": "https://acme.x",
    }


def test_any_2xx_with_a_token_is_a_renewal() -> None:
    with token_endpoint(answer(201, {"access_token": "new"})) as (server, client):
        result = renew(client, server.url, dict(APP))

    assert result == {**APP, "access_token": "new"}


def test_a_refused_renewal_is_permanent_with_the_vendors_reason() -> None:
    body = {"error": "invalid_grant", "message": "refresh token is invalid"}
    with token_endpoint(answer(400, body)) as (server, client):
        result = renew(client, server.url, dict(APP))

    assert result == Outcome(
        ok=False,
        error="reconnect Acme: refresh token is invalid [invalid_grant]",
        permanent=True,
        status_code=400,
    )


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "expired access/refresh token"},
            "reconnect Acme: expired access/refresh token (invalid_grant)",
        ),
        (401, {"error": "invalid_client"}, "reconnect Acme: invalid_client (invalid_client)"),
        (403, {"error_description": "no"}, "reconnect Acme: no (HTTP 403)"),
        (400, "not an object", "reconnect Acme: HTTP 400 (HTTP 400)"),
    ],
)
def test_rfc_6749s_error_answer_as_a_reason(status: int, body: Any, error: str) -> None:
    with token_endpoint(answer(status, body)) as (server, client):
        result = oauth.refresh(
            client,
            server.url + TOKEN_PATH,
            form={},
            credentials=dict(APP),
            now=NOW,
            vendor="Acme",
            message_of=oauth.error_reason,
        )

    assert result == Outcome(ok=False, error=error, permanent=True, status_code=status)


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (
            answer(503, {"error": "temporarily_unavailable"}, **{"retry-after": "7"}),
            "Acme's token endpoint answered 503",
            7.0,
        ),
        (answer(500, {}), "Acme's token endpoint answered 500", None),
        (
            answer(429, {"error": "slow_down"}, **{"retry-after": "2"}),
            "Acme's token endpoint answered 429",
            2.0,
        ),
        (
            tokens(refresh_token="refresh-2", expires_in=3600),
            "Acme's token endpoint answered 200 without an access_token",
            None,
        ),
        (
            tokens(access_token=""),
            "Acme's token endpoint answered 200 without an access_token",
            None,
        ),
        (
            Reply(200, {"content-type": "text/html"}, b"<html>maintenance</html>"),
            "Acme's token endpoint answered 200 without an access_token",
            None,
        ),
        (Reply(302, {"location": "/login"}, b""), "Acme's token endpoint answered 302", None),
    ],
)
def test_a_token_endpoint_down_or_making_no_sense_is_retried(
    reply: Reply, error: str, retry_after: float | None
) -> None:
    with token_endpoint(reply) as (server, client):
        result = renew(client, server.url, {**APP, "access_token": "old"})

    assert result == Outcome(
        ok=False, error=error, retry_after=retry_after, status_code=reply.status
    )


def test_a_token_endpoint_that_does_not_answer_in_time_is_retried() -> None:
    server = ScriptedServer([Reply(delay=1.0)])
    with server.running(), httpx.Client(timeout=0.2) as client:
        result = renew(client, server.url, dict(APP))

    assert result == Outcome(ok=False, error="Acme's token endpoint did not answer in time")


def test_an_unreachable_token_endpoint_is_retried() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: nothing listens there
    with httpx.Client(timeout=2) as client:
        result = renew(client, f"http://127.0.0.1:{port}", dict(APP))

    assert result == Outcome(ok=False, error="could not reach Acme's token endpoint: ConnectError")


# --- renewed on the way: ahead, and once on a 401 ------------------------------------


class Failed(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class Session(oauth.Tokens):
    def __init__(
        self, client: httpx.Client, url: str, credentials: Mapping[str, str], **options: Any
    ) -> None:
        super().__init__(credentials, NOW, **options)
        self.client = client
        self.url = url

    def renewal(self) -> dict[str, str]:
        result = renew(self.client, self.url, self.credentials)
        if isinstance(result, Outcome):
            raise Failed(result)
        return result

    def get(self) -> httpx.Response:
        return self.authorized(
            lambda: self.client.get(
                self.url + "/api",
                headers={"Authorization": f"Bearer {self.credentials['access_token']}"},
            )
        )


def calls(server: ScriptedServer) -> list[tuple[str, str | None]]:
    return [(r.path, r.headers.get("authorization")) for r in server.received]


def test_a_token_expiring_soon_is_renewed_before_the_call() -> None:
    credentials = {**APP, "access_token": "old", "expires_at": at(30)}
    with token_endpoint(tokens(access_token="new"), answer(200, {})) as (server, client):
        session = Session(client, server.url, credentials)
        response = session.get()

    assert response.status_code == 200
    assert calls(server) == [(TOKEN_PATH, None), ("/api", "Bearer new")]
    assert session.with_credentials(Verdict(Outcome(ok=True))).credentials == {
        **APP,
        "access_token": "new",
    }


def test_a_valid_token_is_used_and_nothing_is_handed_back() -> None:
    credentials = {**APP, "access_token": "live", "expires_at": at(61)}
    with token_endpoint(answer(200, {})) as (server, client):
        session = Session(client, server.url, credentials)
        session.get()

    assert calls(server) == [("/api", "Bearer live")]
    verdict = Verdict(Outcome(ok=True))
    assert session.with_credentials(verdict) is verdict


def test_a_401_renews_once_and_repeats_once() -> None:
    credentials = {**APP, "access_token": "revoked"}
    with token_endpoint(
        answer(401, {}), tokens(access_token="t1"), answer(401, {}), answer(401, {})
    ) as (server, client):
        session = Session(client, server.url, credentials)
        first = session.get()
        second = session.get()

    assert (first.status_code, second.status_code) == (401, 401)  # judged by the connector
    assert calls(server) == [
        ("/api", "Bearer revoked"),
        (TOKEN_PATH, None),
        ("/api", "Bearer t1"),
        ("/api", "Bearer t1"),  # renewed once per session only
    ]
    assert session.renewed


def test_renewed_on_a_401_only_when_not_ahead() -> None:
    credentials = {**APP, "access_token": "old", "expires_at": at(-600)}
    with token_endpoint(answer(200, {})) as (server, client):
        session = Session(client, server.url, credentials, ahead=False)
        session.get()

    assert calls(server) == [("/api", "Bearer old")]
    assert not session.renewed


def test_a_failed_renewal_raises_the_connectors_own_exception() -> None:
    with token_endpoint(answer(401, {}), answer(400, {"error": "invalid_grant"})) as (
        server,
        client,
    ):
        session = Session(client, server.url, {**APP, "access_token": "revoked"})
        with pytest.raises(Failed) as failed:
            session.get()

    assert failed.value.outcome == Outcome(
        ok=False,
        error="reconnect Acme: no message [invalid_grant]",
        permanent=True,
        status_code=400,
    )
    assert not session.renewed
    assert session.credentials == {**APP, "access_token": "revoked"}


# --- which credentials are an OAuth app ----------------------------------------------


def test_an_oauth_app_has_all_three_fields() -> None:
    assert oauth.is_app(APP)
    assert not oauth.is_app({**APP, "client_secret": ""})
    assert oauth.check_app(APP, "Acme") is True
    assert oauth.check_app({"access_token": "a"}, "Acme") is False


def test_part_of_an_oauth_app_names_the_first_missing_field() -> None:
    with pytest.raises(InvalidInput) as refused:
        oauth.check_app({"client_id": "c"}, "Acme")

    assert (refused.value.detail, refused.value.code, refused.value.field) == (
        "A Acme OAuth app needs refresh_token, client_id and client_secret together; "
        "missing: refresh_token, client_secret.",
        "missing_credential",
        "credentials.refresh_token",
    )


@pytest.mark.parametrize(
    ("credentials", "app", "detail"),
    [
        ({**APP, "expires_at": "soon"}, True, "must be an ISO 8601 time"),
        ({"access_token": "a", "expires_at": at(60)}, False, "only with an app"),
    ],
)
def test_expires_at_is_an_iso_time_of_an_oauth_app(
    credentials: dict[str, str], app: bool, detail: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        oauth.check_expires_at(credentials, app=app, without_app="only with an app")

    assert detail in refused.value.detail
    assert (refused.value.code, refused.value.field) == (
        "invalid_credential",
        "credentials.expires_at",
    )
    oauth.check_expires_at({**APP, "expires_at": at(60)}, app=True, without_app="-")
    oauth.check_expires_at(dict(APP), app=True, without_app="-")
