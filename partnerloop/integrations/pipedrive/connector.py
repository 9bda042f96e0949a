"""Pipedrive (API v2): customers become persons, found by e-mail, then updated or created.

Pipedrive has no upsert, so each contact takes two calls:

1. `GET {base}/api/v2/persons/search?term=<email>&fields=email&exact_match=true`
   (exact match is case-insensitive). Answer `{"success": true, "data": {"items":
   [{"result_score": ..., "item": {"id": 42, "emails": [...], ...}}]}}`; no items
   means no such person. Several matches: the one whose e-mail is the address,
   lowest id first (the oldest person), so repeated deliveries pick the same one.
2. Found: `PATCH {base}/api/v2/persons/{id}`; not found: `POST {base}/api/v2/persons`.
   Body: `name` (the mapped `name`; on create, the e-mail when there is none, as
   Pipedrive requires a name), `emails: [{"value": email, "primary": true,
   "label": "work"}]` on create only, and every other mapped property under
   `custom_fields` {field key: value}. The update leaves `emails` out: Pipedrive
   replaces the whole list, which would wipe addresses a sales rep added, and
   the person was found by this address so it is there already. A mapped value
   of None never reaches Pipedrive (the mapping drops it), so no field a rep
   filled by hand is blanked. A found person with nothing to update (only the
   e-mail is mapped) gets no PATCH.

`base` is settings.api_base_url, else `https://<company_domain>.pipedrive.com`,
else the `api_domain` Pipedrive gave with the last OAuth token (e.g.
`https://acme.pipedrive.com`; kept in the credentials), else
`https://api.pipedrive.com`.

Authentication (credentials), one of (`check_credentials` refuses anything else,
see connectors.create):
- `api_token`: sent in the `x-api-token` header (Pipedrive also takes
  `?api_token=`, but a header keeps the token out of URLs and access logs);
- `access_token` alone: an OAuth access token as `Authorization: Bearer`, used as
  is. Pipedrive expires it after about an hour; a 401 then dead-letters
  "reconnect Pipedrive: the access token expired and no refresh_token was given";
- an OAuth app: `refresh_token`, `client_id`, `client_secret`, plus the
  `access_token` and its `expires_at` (ISO 8601) once we have them. Before a
  call, a missing token or one that expires within 60 s is renewed with
  `POST {oauth_base_url}/oauth/token` (settings.oauth_base_url, default
  https://oauth.pipedrive.com; form grant_type=refresh_token&refresh_token=...,
  HTTP Basic auth client_id:client_secret; answer {access_token, token_type,
  refresh_token, scope, expires_in, api_domain}); a 401 renews it once more and
  repeats the call once. The new credentials (every key; the refresh_token as
  Pipedrive returns it, as it may rotate it; expires_at = now + expires_in; the
  api_domain) go back in `Verdict.credentials` to be stored, also when the
  call itself then fails. A renewal refused (invalid_grant, a wrong client
  secret: any 4xx but 429) dead-letters "reconnect Pipedrive: <its message>";
  the token endpoint down (5xx, 429, timeout, a 2xx without a token) is
  retried. Either ends the whole batch: no contact or deal is to blame. Nothing
  from the token endpoint's answer but its error message reaches the attempt log
  (it holds tokens). The grant itself is partnerloop.integrations.oauth's.
  `read_contacts` hands renewed credentials back too (ContactsRead): the
  upsert that follows uses them instead of spending the refresh token again,
  which matters when Pipedrive rotates it.

Answers, for every call:
- 2xx with `"success": true`: done (a 2xx without it is retried: not Pipedrive's).
- 429: the rate limit of the token/account: wait Retry-After, else the
  `x-ratelimit-reset` header (seconds until the window resets), else 2 s; the
  whole connector pauses that long, as every call would hit the same limit.
- 401: the token is wrong or was revoked (after an OAuth app's renewal and
  repeat, or for an `api_token`); 403: the token's user may not do this. Both
  retried with a clear error (the merchant fixes the token or the permission;
  the attempt log says so). An `access_token` given alone: see above.
- 400/404/422: our request is wrong (e.g. a custom field key that does not
  exist, a bad company domain): dead-lettered with Pipedrive's `error` (and
  `error_info`), replayable after the fix. Exception: 404 on the update means
  the person was deleted or merged between search and update; retried, and the
  next try searches again.
- 5xx, other statuses, timeouts, connection errors: retried.

Several contacts in one call (a batch of due messages) run in turn, after
deduplicating by e-mail (the last contact wins). A contact refused for good
(400/404/422) goes to `Verdict.rejected` with Pipedrive's error and the others
go on; the first retryable failure ends the batch and its retry redoes the ones
already sent, harmlessly (search first). `remote_ids` are the persons' ids.

Current values (`read_contacts`, for conflict policies): per e-mail the same
search, then `GET {base}/api/v2/persons/{id}`; the person's `name`, the address
it was found by as `email`, its `custom_fields` by key, and `update_time` as the
time of every field.

Not atomic: search-then-create can create a duplicate person only if two
deliveries for the same e-mail both search before either creates. Deliveries of
one connector run one at a time per worker (the outbox claims messages in
turn), so this needs two workers picking up two messages of the same customer
within the same second or so; the retry of one delivery never races itself, as
a retry starts after the attempt ended. A duplicate, if it happens, is a
visible Pipedrive person the merchant can merge; later deliveries update the
oldest one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from partnerloop.core.clock import parse_datetime
from partnerloop.core.errors import InvalidInput
from partnerloop.core.http import retry_after_seconds
from partnerloop.integrations import oauth
from partnerloop.integrations.connectors import check_switch
from partnerloop.integrations.crm import ContactsRead, CrmRecord, DealFacts, Verdict
from partnerloop.sync.worker import Outcome

KIND = "pipedrive"
DEFAULT_API_BASE = "https://api.pipedrive.com"
DEFAULT_OAUTH_BASE = "https://oauth.pipedrive.com"
OAUTH_PATH = "/oauth/token"
PERSONS_PATH = "/api/v2/persons"
SEARCH_PATH = "/api/v2/persons/search"
MAX_RESPONSE_CHARS = 1000
MAX_MESSAGE_CHARS = 300  # of the token endpoint's error message, in the attempt log
PERMANENT_STATUSES = (400, 404, 422)
CREDENTIAL_STATUSES = (401, 403)
DEFAULT_RATE_LIMIT_WAIT = 2.0
EMAIL_LABEL = "work"
MISSING_AUTH = (
    "no Pipedrive token (credentials.api_token, credentials.access_token, or an OAuth "
    "app's refresh_token, client_id and client_secret)"
)
EXPIRED_WITHOUT_REFRESH = (
    "reconnect Pipedrive: the access token expired and no refresh_token was given"
)
# The subdomain of <company>.pipedrive.com: a DNS label.
# Amount text as the field mapping writes it ("100.00"), never a float.
_DECIMAL_TEXT = re.compile(r"^-?\d+\.\d+$")
_COMPANY_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)


class _Failed(Exception):
    """A call's answer that ends the delivery."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.error)
        self.verdict = verdict


class _Stop(_Failed):
    """The connector cannot authenticate (no token, a refused or failed renewal, an
    expired token without a refresh_token): it ends the whole batch, as no
    contact or deal is to blame, even when permanent."""


def _base(settings: Mapping[str, Any], credentials: Mapping[str, str] | None = None) -> str:
    explicit = settings.get("api_base_url")
    if explicit:
        return str(explicit).rstrip("/")
    domain = settings.get("company_domain")
    if domain:
        return f"https://{domain}.pipedrive.com"
    api_domain = _api_domain((credentials or {}).get("api_domain"))
    if api_domain:
        return api_domain
    return DEFAULT_API_BASE


def _oauth_base(settings: Mapping[str, Any]) -> str:
    return str(settings.get("oauth_base_url") or DEFAULT_OAUTH_BASE).rstrip("/")


def _api_domain(value: Any) -> str | None:
    """An api_domain from Pipedrive (an http(s) URL with a host), without the
    trailing slash; None for anything else."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return value.strip().rstrip("/")


def _auth_headers(credentials: Mapping[str, str]) -> dict[str, str] | None:
    access_token = credentials.get("access_token")
    if access_token:
        return {"Authorization": f"Bearer {access_token}"}
    api_token = credentials.get("api_token")
    if api_token:
        return {"x-api-token": api_token}
    return None


def _invalid_credentials(detail: str, field: str, code: str = "invalid_credential") -> InvalidInput:
    return InvalidInput(detail, code=code, field=field)


class _Auth(oauth.Tokens):
    """The credentials of one upsert or read: the headers of each call, an OAuth
    app's token renewed on the way, and the API base (an OAuth answer's
    api_domain may set it)."""

    def __init__(
        self,
        client: httpx.Client,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        now: datetime,
    ) -> None:
        super().__init__(credentials, now)
        self.client = client
        self.settings = settings

    @property
    def usable(self) -> bool:
        return oauth.is_app(self.credentials) or _auth_headers(self.credentials) is not None

    @property
    def base(self) -> str:
        return _base(self.settings, self.credentials)

    def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call to `{base}{path}` with a valid token; raises _Failed when there
        is no answer, _Stop when the connector cannot authenticate. An OAuth
        app's token renewed and repeated once on a 401 that is refused again is
        judged (retried)."""
        arguments: dict[str, Any] = {"params": params, "json": json, "content": content}
        if oauth.is_app(self.credentials):
            return self.authorized(lambda: self._send(method, path, what, arguments, headers))
        response = self._send(method, path, what, arguments, headers)
        if (
            response.status_code == 401
            and self.credentials.get("access_token")
            and not self.credentials.get("api_token")
        ):
            excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
            raise _Stop(
                Verdict(
                    Outcome(
                        ok=False,
                        error=EXPIRED_WITHOUT_REFRESH,
                        permanent=True,
                        status_code=401,
                        response=excerpt,
                    )
                )
            )
        return response

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        arguments: Mapping[str, Any],
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        auth = _auth_headers(self.credentials)
        if auth is None:
            raise _Stop(Verdict(Outcome(ok=False, error=MISSING_AUTH)))
        try:
            return self.client.request(
                method, self.base + path, headers={**(headers or {}), **auth}, **arguments
            )
        except httpx.TimeoutException:
            raise _Failed(
                Verdict(Outcome(ok=False, error=f"Pipedrive {what}: no answer in time"))
            ) from None
        except httpx.HTTPError as error:
            raise _Failed(
                Verdict(Outcome(ok=False, error=f"Pipedrive {what}: could not reach it: {error}"))
            ) from None

    def renewal(self) -> dict[str, str]:
        answer = oauth.refresh(
            self.client,
            _oauth_base(self.settings) + OAUTH_PATH,
            form={},
            auth=(self.credentials["client_id"], self.credentials["client_secret"]),
            credentials=self.credentials,
            now=self.now,
            vendor="Pipedrive",
            message_of=_refusal,
            extra=_answer_api_domain,
        )
        if isinstance(answer, Outcome):
            raise _Stop(Verdict(answer))
        return answer


def _answer_api_domain(answer: Mapping[str, Any]) -> dict[str, str]:
    """The API base a token answer names, kept in the credentials (see `_base`)."""
    api_domain = _api_domain(answer.get("api_domain"))
    return {"api_domain": api_domain} if api_domain else {}


def _refusal(answer: Mapping[str, Any], status: int) -> str:
    """A refused renewal's reason (invalid_grant: the refresh token was revoked,
    expired unused for 60 days or replaced; invalid_client: a wrong client_id or
    client_secret)."""
    code = _text(answer.get("error"))
    message = _text(answer.get("message")) or _text(answer.get("error_description"))
    if message and code:
        return f"{message} ({code})"
    if message or code:
        return f"{message or code} (HTTP {status})"
    return f"the token endpoint refused the refresh token (HTTP {status})"


def _text(value: Any) -> str:
    """A short text from an error answer ("" for anything else)."""
    return value.strip()[:MAX_MESSAGE_CHARS] if isinstance(value, str) else ""


class PipedriveConnector:
    kind = KIND
    key_property = "email"
    settings_fields: Mapping[str, bool] = {
        "company_domain": False,
        # Orders as deals (partnerloop.integrations.pipedrive.deals): "on" or "off",
        # and the deal custom field (40-character key) that holds the order id.
        "deals": False,
        "order_id_field": False,
        # The OAuth server an OAuth app's token is renewed at (tests: a local server).
        "oauth_base_url": False,
    }
    # CRM properties whose changes (by webhook) are written back to the shop customer.
    list_settings: Sequence[str] = ("write_back",)
    credential_fields: Sequence[str] = (
        "api_token",
        "access_token",
        *oauth.APP_FIELDS,
        "expires_at",
    )

    def check_secret(self, secret: str | None) -> str:
        """The webhooks' HTTP Basic auth as "user:password" (Pipedrive signs nothing);
        without it Pipedrive's webhooks are refused (partnerloop.integrations.pipedrive.webhooks)."""
        return secret or ""

    def check_credentials(self, credentials: Mapping[str, str]) -> None:
        """An `api_token`; or an OAuth `access_token` alone; or an OAuth app's
        refresh_token, client_id and client_secret (with access_token and
        expires_at if known). Raises InvalidInput naming the field."""
        if credentials.get("api_token"):
            other = next(
                (n for n in (*oauth.APP_FIELDS, "access_token", "expires_at") if n in credentials),
                None,
            )
            if other is not None:
                raise _invalid_credentials(
                    "A Pipedrive connector takes an api_token or OAuth credentials, not "
                    f"both; leave out credentials.{other} or credentials.api_token.",
                    f"credentials.{other}",
                )
            return
        app = oauth.check_app(credentials, "Pipedrive")
        if not app and not credentials.get("access_token"):
            raise _invalid_credentials(
                "A Pipedrive connector needs credentials: an api_token, an OAuth "
                "access_token, or an OAuth app's refresh_token, client_id and client_secret.",
                "credentials",
                "missing_credential",
            )
        oauth.check_expires_at(
            credentials,
            app=app,
            without_app="credentials.expires_at goes with an OAuth app's refresh_token, "
            "client_id and client_secret: without them the access token cannot be renewed.",
        )

    def validate(self, settings: Mapping[str, Any]) -> None:
        from partnerloop.integrations.pipedrive import deals  # it imports this module

        check_switch(settings, "deals")
        deals.check_deal_settings(settings)
        domain = settings.get("company_domain")
        if domain is not None and not _COMPANY_DOMAIN.match(str(domain)):
            raise InvalidInput(
                f"{domain!r} is not a Pipedrive company domain; give the part before "
                ".pipedrive.com, e.g. acme for https://acme.pipedrive.com.",
                code="invalid_setting",
                field="settings.company_domain",
            )

    def as_stored(self, value: Any) -> Any:
        """Our value as Pipedrive gives it back, so conflicts compare like with like.
        Amounts go out as decimal text ("100.00"); a numeric or monetary custom
        field reads back as a number (100): decimal text becomes a Decimal, which
        compares by value with the Decimals `read_contacts` returns (and is sent
        as the same text again). Everything else is kept as Pipedrive keeps it."""
        if isinstance(value, str) and _DECIMAL_TEXT.match(value):
            return Decimal(value)
        return value

    def upsert_deals(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        deals: Sequence[DealFacts],
        now: datetime,
    ) -> Verdict:
        from partnerloop.integrations.pipedrive import deals as pipedrive_deals

        return pipedrive_deals.upsert_deals(
            client, settings=settings, credentials=credentials, deals=deals, now=now
        )

    def upsert_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        contacts: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> Verdict:
        """Find each contact's person by e-mail, then update it or create one.
        A batch is deduplicated by e-mail first (ignoring case; the last contact
        wins). A contact refused for good goes to `rejected` and the others go
        on; the first retryable failure (rate limit, Pipedrive down) ends the
        batch, and its retry redoes the ones already sent, harmlessly (search
        first). Every contact refused: the outcome itself is a permanent failure.
        An OAuth token renewed on the way comes back in `credentials`."""
        auth = _Auth(client, settings, credentials, now)
        if not auth.usable:
            return Verdict(Outcome(ok=False, error=MISSING_AUTH))
        unique: dict[str, Mapping[str, Any]] = {}
        for contact in contacts:
            email = contact.get("email")
            if not email:
                continue  # nothing to find the person by (the deliverer never passes one)
            unique.pop(str(email).lower(), None)
            unique[str(email).lower()] = contact
        if not unique:
            return Verdict(Outcome(ok=True, response="no contacts: nothing to sync"))
        return auth.with_credentials(self._upsert_all(auth, unique, now=now))

    def _upsert_all(
        self, auth: _Auth, unique: Mapping[str, Mapping[str, Any]], *, now: datetime
    ) -> Verdict:
        remote_ids: dict[str, str] = {}
        rejected: dict[str, str] = {}
        last: Verdict | None = None
        for key, contact in unique.items():
            try:
                last, person_id = self._upsert_one(auth, contact, now=now)
            except _Stop as stop:
                return stop.verdict  # no contact is to blame: the whole batch waits or dies
            except _Failed as failed:
                if not failed.verdict.outcome.permanent:
                    return failed.verdict
                last = failed.verdict
                rejected[key] = failed.verdict.outcome.error or "refused"
                continue
            if person_id is not None:
                remote_ids[key] = str(person_id)
        assert last is not None  # at least one contact was sent
        if len(rejected) < len(unique):
            return Verdict(
                Outcome(
                    ok=True, status_code=last.outcome.status_code, response=last.outcome.response
                ),
                remote_ids=remote_ids,
                rejected=rejected or None,
            )
        if len(unique) == 1:
            return replace(last, rejected=rejected)  # its own answer, as before batches
        first = next(iter(rejected.values()))
        outcome = Outcome(
            ok=False,
            error=f"Pipedrive refused every contact: {first}",
            permanent=True,
            status_code=last.outcome.status_code,
            response=last.outcome.response,
        )
        return Verdict(outcome, remote_ids=remote_ids, rejected=rejected)

    def read_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        keys: Sequence[str],
        properties: Sequence[str],
        now: datetime,
    ) -> ContactsRead | Verdict:
        """The persons' current values by e-mail, for conflict policies: for each
        key the person search the upsert uses, then `GET {base}/api/v2/persons/{id}`.
        Values under the names the upsert writes: `email` (the address found),
        `name`, every other name from `custom_fields` (a monetary value
        {value, currency} as its value, numbers as Decimals: see `as_stored`);
        updated_at is the person's `update_time`, standing for every field's time.
        A key with no person is absent. An OAuth token renewed on the way comes
        back with a failure's verdict; after a successful read the client
        remembers it for the upsert that follows (see the module's docstring)."""
        auth = _Auth(client, settings, credentials, now)
        if not auth.usable:
            return Verdict(Outcome(ok=False, error=MISSING_AUTH))
        records: dict[str, CrmRecord] = {}
        try:
            for email in dict.fromkeys(str(key).lower() for key in keys if key):
                _, found = self._call(
                    auth,
                    "GET",
                    SEARCH_PATH,
                    "person search",
                    params={"term": email, "fields": "email", "exact_match": "true"},
                    now=now,
                )
                person_id = _person_id(found, email)
                if person_id is None:
                    continue
                _, answer = self._call(
                    auth,
                    "GET",
                    f"{PERSONS_PATH}/{person_id}",
                    f"read of person {person_id}",
                    now=now,
                    gone_is_retry=True,
                    exact=True,
                )
                person = answer.get("data")
                if isinstance(person, dict):
                    records[email] = _record_of(person, email, properties)
        except _Failed as failed:
            return auth.with_credentials(failed.verdict)
        return ContactsRead(records, dict(auth.credentials) if auth.renewed else None)

    def _upsert_one(
        self,
        auth: _Auth,
        contact: Mapping[str, Any],
        *,
        now: datetime,
    ) -> tuple[Verdict, int | None]:
        """The verdict and the person's id (found or created); raises _Failed."""
        email = str(contact["email"])
        searched, found = self._call(
            auth,
            "GET",
            SEARCH_PATH,
            "person search",
            params={"term": email, "fields": "email", "exact_match": "true"},
            now=now,
        )
        person_id = _person_id(found, email)
        custom = {
            key: value
            for key, value in contact.items()
            if key not in ("email", "name") and value is not None
        }
        name = contact.get("name")
        body: dict[str, Any] = {}
        if person_id is None:
            body["name"] = str(name) if name else email
            body["emails"] = [{"value": email, "primary": True, "label": EMAIL_LABEL}]
        elif name:
            body["name"] = str(name)
        if custom:
            body["custom_fields"] = custom
        if person_id is None:
            verdict, created = self._call(
                auth, "POST", PERSONS_PATH, "person create", body=body, now=now
            )
            data = created.get("data")
            new_id = data.get("id") if isinstance(data, dict) else None
            is_id = isinstance(new_id, int) and not isinstance(new_id, bool)
            return verdict, new_id if is_id else None
        if not body:  # only the e-mail is mapped, and the person has it already
            return searched, person_id
        verdict, _ = self._call(
            auth,
            "PATCH",
            f"{PERSONS_PATH}/{person_id}",
            f"update of person {person_id}",
            body=body,
            now=now,
            gone_is_retry=True,
        )
        return verdict, person_id

    def _call(
        self,
        auth: _Auth,
        method: str,
        path: str,
        what: str,
        *,
        now: datetime,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        gone_is_retry: bool = False,
        exact: bool = False,
    ) -> tuple[Verdict, dict[str, Any]]:
        """One call: its verdict and JSON on success (`exact`: fractions as
        Decimals); raises _Failed otherwise (_Stop: the connector cannot
        authenticate)."""
        payload = _jsonable(dict(body)) if body is not None else None
        response = auth.request(method, path, what, params=params, json=payload)
        verdict, data = self.judge(response, what=what, now=now, gone_is_retry=gone_is_retry)
        if not verdict.outcome.ok:
            raise _Failed(verdict)
        return verdict, _json(response, exact=True) if exact else data

    def judge(
        self,
        response: httpx.Response,
        *,
        what: str,
        now: datetime,
        gone_is_retry: bool = False,
    ) -> tuple[Verdict, dict[str, Any]]:
        """What an answer means, and its JSON body ({} when it has none)."""
        status = response.status_code
        excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
        data = _json(response)
        if 200 <= status < 300:
            if data.get("success") is True:
                return Verdict(Outcome(ok=True, status_code=status, response=excerpt)), data
            error = f"Pipedrive {what} answered {status} without success: true"
            return (
                Verdict(Outcome(ok=False, error=error, status_code=status, response=excerpt)),
                data,
            )
        message = _message(data) or f"HTTP {status}"
        if status == 429:
            wait = retry_after_seconds(response)
            if wait is None:
                wait = retry_after_seconds(response, header="x-ratelimit-reset")
            if wait is None:
                wait = DEFAULT_RATE_LIMIT_WAIT
            outcome = Outcome(
                ok=False,
                error=f"Pipedrive rate limit ({what}): {message}; waiting {wait:g} s",
                retry_after=wait,
                status_code=status,
                response=excerpt,
            )
            return Verdict(outcome, pause_until=now + timedelta(seconds=wait)), data
        if status in CREDENTIAL_STATUSES:
            problem = (
                "the token is wrong or was revoked"
                if status == 401
                else "the token's user is not allowed to do this"
            )
            error = (
                f"Pipedrive {what} answered {status}: {message} ({problem}; fix the "
                "connector's credentials or the user's permissions in Pipedrive)"
            )
            outcome = Outcome(ok=False, error=error, status_code=status, response=excerpt)
            return Verdict(outcome), data
        if status == 404 and gone_is_retry:
            error = (
                f"Pipedrive {what} answered 404: {message} (the person was deleted or "
                "merged since the search; the next try searches again)"
            )
            outcome = Outcome(ok=False, error=error, status_code=status, response=excerpt)
            return Verdict(outcome), data
        outcome = Outcome(
            ok=False,
            error=f"Pipedrive {what} answered {status}: {message}",
            permanent=status in PERMANENT_STATUSES,
            retry_after=retry_after_seconds(response),
            status_code=status,
            response=excerpt,
        )
        return Verdict(outcome), data


def _person_id(answer: Mapping[str, Any], email: str) -> int | None:
    """The person a search found for this e-mail: exact address first, then lowest id."""
    data = answer.get("data")
    items = data.get("items") if isinstance(data, dict) else None
    candidates: list[tuple[bool, int]] = []
    for entry in items if isinstance(items, list) else []:
        item = entry.get("item") if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            continue
        person_id = item.get("id")
        if isinstance(person_id, bool) or not isinstance(person_id, int):
            continue
        candidates.append((not _has_email(item, email), person_id))
    return min(candidates)[1] if candidates else None


def _has_email(item: Mapping[str, Any], email: str) -> bool:
    # Search items list e-mails as text; person records as {value, primary, label}.
    values = item.get("emails") or item.get("email") or []
    wanted = email.casefold()
    for value in values if isinstance(values, list) else []:
        text = value.get("value") if isinstance(value, dict) else value
        if isinstance(text, str) and text.strip().casefold() == wanted:
            return True
    return False


def _message(data: Mapping[str, Any]) -> str:
    error = data.get("error")
    info = data.get("error_info")
    text = str(error) if error else ""
    if info:
        text = f"{text} ({info})" if text else str(info)
    return text


def _json(response: httpx.Response, *, exact: bool = False) -> dict[str, Any]:
    try:
        if not response.content:
            return {}
        data = json.loads(response.content, parse_float=Decimal if exact else float)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _jsonable(value: Any) -> Any:
    """Decimals (from `as_stored`) go out as the decimal text they came from."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _record_of(person: Mapping[str, Any], email: str, properties: Sequence[str]) -> CrmRecord:
    """A person (API v2) as the values of the names the upsert writes."""
    custom = person.get("custom_fields")
    custom = custom if isinstance(custom, dict) else {}
    values: dict[str, Any] = {}
    for name in properties:
        if name == "email":
            values[name] = _stored_email(person, email)
        elif name == "name":
            values[name] = person.get("name")
        elif name in custom:
            values[name] = _as_ours(custom[name])
    update_time = person.get("update_time")
    updated_at = None
    if isinstance(update_time, str) and update_time:
        try:
            updated_at = parse_datetime(update_time)
        except ValueError:
            updated_at = None
    return CrmRecord(values=values, updated_at=updated_at)


def _stored_email(person: Mapping[str, Any], email: str) -> str | None:
    """The address as Pipedrive holds it: the one the person was found by."""
    values = person.get("emails") or []
    for value in values if isinstance(values, list) else []:
        text = value.get("value") if isinstance(value, dict) else value
        if isinstance(text, str) and text.strip().casefold() == email.casefold():
            return text
    return None


def _as_ours(value: Any) -> Any:
    """A custom field's value in the form partnerloop writes it."""
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "currency"}:
        value = value["value"]  # a monetary field: {value, currency}
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


CONNECTOR = PipedriveConnector()
