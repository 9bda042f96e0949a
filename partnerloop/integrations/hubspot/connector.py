"""HubSpot (CRM v3): customers become contacts, upserted by e-mail.

`POST /crm/v3/objects/contacts/batch/upsert` with `idProperty: email` creates
the contact or updates it, so a retried delivery does the same thing twice
and no duplicate contact appears. One call takes up to 100 inputs (HubSpot's
batch limit); more contacts are split into calls of 100 and the answers
combined. The same e-mail twice in one call is an error at HubSpot, so a batch
is deduplicated by e-mail (ignoring case) first: the last contact wins.

Authentication (credentials), either:
- a private app's `access_token` (`Authorization: Bearer`), used as is; or
- an OAuth app: `refresh_token`, `client_id`, `client_secret`, plus the
  `access_token` and its `expires_at` (ISO 8601) once we have them. Before a
  call, a missing token or one that expires within 60 s is renewed with
  `POST {api_base}/oauth/v1/token` (form: grant_type=refresh_token, client_id,
  client_secret, refresh_token; answer {access_token, refresh_token,
  expires_in}); a 401 renews it once more and repeats the call once. The new
  credentials (every key, expires_at = now + expires_in) go back in
  `Verdict.credentials` to be stored, also when the call itself then fails.
  A renewal refused (400 BAD_REFRESH_TOKEN / invalid_grant, any other 4xx but
  429) dead-letters "reconnect HubSpot: ..."; the token endpoint down (5xx,
  429, timeout, a 2xx without a token) is retried. Nothing from the token
  endpoint's answer reaches the attempt log (it holds tokens). The grant itself
  is partnerloop.integrations.oauth's.
`check_credentials` accepts exactly these two forms (see connectors.create).

Answers and what they mean (../shared/fixtures/NOTES.md section 5):
- 200/201: every input accepted (the `errors` of HubSpot's documented example
  body are a schema template and are ignored on a 200).
- 207 Multi-Status: some inputs failed. Each error's `context` ({name: [values]})
  names the inputs it is about by their e-mail: those contacts go to
  `Verdict.rejected` {e-mail: HubSpot's message}, the others count as delivered.
  An error that names no input of the call (HubSpot does not always say which
  one failed) makes the whole call a retryable failure: we cannot tell the good
  contacts from the bad, and redoing an upsert is harmless; after its attempts
  run out the engine dead-letters the batch. A call of one contact is the
  exception: the error can only be about that one. When every contact is
  refused the outcome itself is a permanent failure (nothing was delivered).
- 429 with policyName SECONDLY (or any other interval): wait (Retry-After, else
  one second). 429 DAILY: the account's daily quota is used up until midnight in
  the account's time zone: the whole connector pauses until then.
- 401: a private app's token is wrong or was revoked: retried (the merchant
  fixes it), and the attempt log says so. 400/403/404/409/422: our payload or a
  property is wrong (e.g. a custom property that does not exist): dead-lettered
  with HubSpot's message, replayable after the fix; in a batch split over
  several calls, a call refused that way puts its contacts in `rejected` and the
  other calls still count. 5xx and timeouts: retried (the first retryable
  failure ends the batch; its retry redoes the calls already made, harmlessly).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from partnerloop.core.clock import parse_datetime
from partnerloop.core.errors import InvalidInput
from partnerloop.core.http import retry_after_seconds
from partnerloop.integrations import oauth
from partnerloop.integrations.connectors import check_switch
from partnerloop.integrations.crm import ContactsRead, CrmRecord, DealFacts, Verdict
from partnerloop.sync.worker import Outcome

KIND = "hubspot"
DEFAULT_API_BASE = "https://api.hubapi.com"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
READ_PATH = "/crm/v3/objects/contacts/batch/read"
OAUTH_PATH = "/oauth/v1/token"
BATCH_LIMIT = 100  # inputs per batch call (upsert and read)
MAX_RESPONSE_CHARS = 1000
PERMANENT_STATUSES = (400, 403, 404, 409, 422)
_T = TypeVar("_T")
MISSING_AUTH = (
    "no HubSpot access token (credentials.access_token, or an OAuth app's "
    "refresh_token, client_id and client_secret)"
)


def next_midnight(now: datetime, timezone: str) -> datetime:
    local = now.astimezone(ZoneInfo(timezone))
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(ZoneInfo("UTC"))


def _text(value: Any) -> str:
    # HubSpot stores every property as text (numbers, dates in ms, booleans "true").
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Stop(Exception):
    """A call that cannot go on (no token, a refused renewal, HubSpot unreachable)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.error)
        self.verdict = verdict


class _Auth(oauth.Tokens):
    """The credentials of one upsert or read, renewed on the way for an OAuth app."""

    def __init__(
        self,
        client: httpx.Client,
        base: str,
        credentials: Mapping[str, str],
        now: datetime,
    ) -> None:
        super().__init__(credentials, now)
        self.client = client
        self.base = base

    def post(self, path: str, body: Mapping[str, Any], *, what: str) -> httpx.Response:
        """POST to HubSpot with a valid token; raises _Stop when it cannot."""
        if not oauth.is_app(self.credentials):
            return self._send(path, body, what=what)
        return self.authorized(lambda: self._send(path, body, what=what))

    def _send(self, path: str, body: Mapping[str, Any], *, what: str) -> httpx.Response:
        token = self.credentials.get("access_token")
        if not token:
            raise _Stop(Verdict(Outcome(ok=False, error=MISSING_AUTH)))
        try:
            return self.client.post(
                self.base + path, json=dict(body), headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TimeoutException:
            raise _Stop(
                self.with_credentials(
                    Verdict(Outcome(ok=False, error=f"HubSpot did not answer in time ({what})"))
                )
            ) from None
        except httpx.HTTPError as error:
            raise _Stop(
                self.with_credentials(
                    Verdict(Outcome(ok=False, error=f"could not reach HubSpot ({what}): {error}"))
                )
            ) from None

    def renewal(self) -> dict[str, str]:
        answer = oauth.refresh(
            self.client,
            self.base + OAUTH_PATH,
            form={
                "client_id": self.credentials["client_id"],
                "client_secret": self.credentials["client_secret"],
            },
            credentials=self.credentials,
            now=self.now,
            vendor="HubSpot",
            message_of=_refusal,
        )
        if isinstance(answer, Outcome):
            raise _Stop(Verdict(answer))
        return answer


def _refusal(answer: Mapping[str, Any], status: int) -> str:
    """A refused renewal's reason: 400 {status: BAD_REFRESH_TOKEN, message}, or
    RFC 6749's {error: invalid_grant, error_description}."""
    code = str(answer.get("status") or answer.get("error") or f"HTTP {status}")
    return f"{answer.get('message') or answer.get('error_description') or code} ({code})"


class HubSpotConnector:
    kind = KIND
    key_property = "email"
    # HubSpot's published burst limit for private apps: 100 requests per 10 seconds.
    rate_limit = (10.0, 100)
    settings_fields: Mapping[str, bool] = {
        "timezone": False,
        # Orders as deals (partnerloop.integrations.hubspot.deals): "on" or "off".
        "deals": False,
        "deal_pipeline": False,
        "deal_stages": False,
    }
    # CRM properties whose changes (by webhook) are written back to the shop customer.
    list_settings: Sequence[str] = ("write_back",)
    credential_fields: Sequence[str] = ("access_token", *oauth.APP_FIELDS, "expires_at")

    def as_stored(self, value: Any) -> Any:
        """How HubSpot holds a value we send (as text): conflicts compare like with like."""
        return None if value is None else _text(value)

    def check_secret(self, secret: str | None) -> str:
        """The app's client secret, for HubSpot's signed webhooks (optional)."""
        return secret or ""

    def check_credentials(self, credentials: Mapping[str, str]) -> None:
        """A private app's access_token alone, or an OAuth app's refresh_token,
        client_id and client_secret (with access_token and expires_at if known)."""
        app = oauth.check_app(credentials, "HubSpot")
        if not app and not credentials.get("access_token"):
            raise InvalidInput(
                "A HubSpot connector needs credentials: a private app's access_token, or an "
                "OAuth app's refresh_token, client_id and client_secret.",
                code="missing_credential",
                field="credentials",
            )
        oauth.check_expires_at(
            credentials,
            app=app,
            without_app="credentials.expires_at goes with an OAuth app's refresh_token, "
            "client_id and client_secret; a private app's token does not expire.",
        )

    def validate(self, settings: Mapping[str, Any]) -> None:
        from partnerloop.integrations.hubspot import deals  # it imports this module

        check_switch(settings, "deals")
        deals.check_deal_settings(settings)
        name = str(settings.get("timezone") or "UTC")
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"Unknown time zone {name!r}; give the HubSpot account's, e.g. Europe/Amsterdam.",
                code="invalid_setting",
                field="settings.timezone",
            ) from None

    def upsert_deals(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        deals: Sequence[DealFacts],
        now: datetime,
    ) -> Verdict:
        from partnerloop.integrations.hubspot import deals as hubspot_deals

        return hubspot_deals.upsert_deals(
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
        """Upsert contacts (property dicts that include `email`) in batch calls of
        up to 100. A contact without an e-mail has no key and is left out (the
        deliverer never passes one)."""
        unique: dict[str, Mapping[str, Any]] = {}
        for contact in contacts:
            email = contact.get("email")
            if not email:
                continue
            key = str(email).lower()  # HubSpot matches e-mails ignoring case
            unique.pop(key, None)  # the last one wins, in its own place
            unique[key] = contact
        if not unique:
            return Verdict(Outcome(ok=True, response="no contacts: nothing to sync"))
        auth = _Auth(client, _base(settings), credentials, now)
        remote_ids: dict[str, str] = {}
        rejected: dict[str, str] = {}
        last: Outcome | None = None
        whole_failures: list[Outcome] = []
        chunks = list(_chunks(list(unique.items())))
        try:
            for chunk in chunks:
                body = {
                    "inputs": [
                        {
                            "id": str(contact["email"]),
                            "idProperty": "email",
                            # Echoed by HubSpot and named in a 207's errors: one bad
                            # contact is refused alone instead of failing the call.
                            "objectWriteTraceId": key,
                            "properties": {
                                k: _text(v) for k, v in contact.items() if v is not None
                            },
                        }
                        for key, contact in chunk
                    ]
                }
                keys = [key for key, _ in chunk]
                response = auth.post(UPSERT_PATH, body, what="upsert")
                if response.status_code in (200, 201, 207):
                    outcome, ids, refused = self._settle_batch(response, keys)
                    if not outcome.ok:
                        return auth.with_credentials(Verdict(outcome))
                    remote_ids.update(ids)
                    rejected.update(refused)
                    last = outcome
                    continue
                verdict = self.judge(response, settings=settings, now=now)
                if not verdict.outcome.permanent:
                    return auth.with_credentials(verdict)
                # Refused as a whole for good: these contacts are dead, the other calls count.
                whole_failures.append(verdict.outcome)
                rejected.update(dict.fromkeys(keys, str(verdict.outcome.error)))
                last = verdict.outcome
        except _Stop as stop:
            return auth.with_credentials(stop.verdict)
        assert last is not None  # at least one call was made
        if len(rejected) < len(unique):
            outcome = Outcome(ok=True, status_code=last.status_code, response=last.response)
            return auth.with_credentials(
                Verdict(outcome, remote_ids=remote_ids, rejected=rejected or None)
            )
        # Every contact refused: nothing was delivered.
        if len(chunks) == 1 and whole_failures:
            outcome = whole_failures[0]  # one call refused as a whole: its own answer
        else:
            first = next(iter(rejected.values()))
            outcome = Outcome(
                ok=False,
                error=f"HubSpot refused every contact: {first}",
                permanent=True,
                status_code=last.status_code,
                response=last.response,
            )
        return auth.with_credentials(Verdict(outcome, remote_ids=remote_ids, rejected=rejected))

    def _settle_batch(
        self, response: httpx.Response, keys: Sequence[str]
    ) -> tuple[Outcome, dict[str, str], dict[str, str]]:
        """A 200/201/207 answer: (outcome, remote ids, rejected) for this call's keys."""
        status = response.status_code
        excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
        data = _json(response)
        wanted = set(keys)
        rejected: dict[str, str] = {}
        errors = data.get("errors") if status == 207 else None
        for error in errors if isinstance(errors, list) else []:
            error = error if isinstance(error, dict) else {}
            message = str(error.get("message") or "HubSpot refused the contact")
            named = _named_inputs(error.get("context"), wanted)
            if not named and len(keys) == 1:
                named = set(keys)  # one input: the error can only be about it
            if not named:
                return (
                    Outcome(
                        ok=False,
                        error="HubSpot refused part of the batch without naming the contact "
                        f"({message}); the whole batch is retried",
                        status_code=status,
                        response=excerpt,
                    ),
                    {},
                    {},
                )
            for key in sorted(named):
                rejected.setdefault(key, message)
        remote_ids: dict[str, str] = {}
        nameless: list[str] = []
        for result in data.get("results") or []:
            if not isinstance(result, dict) or not result.get("id"):
                continue
            email = str((result.get("properties") or {}).get("email") or "").lower()
            if email:
                remote_ids[email] = str(result["id"])
            else:
                nameless.append(str(result["id"]))
        # HubSpot may not echo the e-mail back: one contact left, one result left,
        # that is its id.
        unmatched = [k for k in keys if k not in remote_ids and k not in rejected]
        if len(unmatched) == 1 and len(nameless) == 1:
            remote_ids[unmatched[0]] = nameless[0]
        return Outcome(ok=True, status_code=status, response=excerpt), remote_ids, rejected

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
        """The CRM's current values of these contacts (by e-mail), for conflict
        policies, in batch reads of up to 100. A contact HubSpot does not have is
        simply absent. HubSpot gives one updatedAt per contact: it stands for
        every property's time. A token renewed on the way is not kept (a read
        returns no credentials); the upsert that follows renews it again."""
        auth = _Auth(client, _base(settings), credentials, now)
        wanted = list(dict.fromkeys(str(key).lower() for key in keys if key))
        names = sorted(set(properties) | {"email"})
        records: dict[str, CrmRecord] = {}
        try:
            for chunk in _chunks(wanted):
                body = {
                    "idProperty": "email",
                    "inputs": [{"id": key} for key in chunk],
                    "properties": names,
                }
                response = auth.post(READ_PATH, body, what="read")
                if response.status_code not in (200, 207):
                    return auth.with_credentials(self.judge(response, settings=settings, now=now))
                for result in _json(response).get("results") or []:
                    if not isinstance(result, dict):
                        continue
                    values = dict(result.get("properties") or {})
                    email = str(values.get("email") or "").lower()
                    if email:
                        records[email] = CrmRecord(
                            values=values, updated_at=_parse_time(result.get("updatedAt"))
                        )
        except _Stop as stop:
            return auth.with_credentials(stop.verdict)
        return ContactsRead(records, dict(auth.credentials) if auth.renewed else None)

    def judge(
        self, response: httpx.Response, *, settings: Mapping[str, Any], now: datetime
    ) -> Verdict:
        """What a whole call's answer means (a 207 is settled per input by the upsert)."""
        status = response.status_code
        excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
        data = _json(response)
        if status in (200, 201):
            ids = {
                str((result.get("properties") or {}).get("email", "")).lower(): str(result["id"])
                for result in data.get("results") or []
                if isinstance(result, dict) and result.get("id")
            }
            return Verdict(
                Outcome(ok=True, status_code=status, response=excerpt),
                remote_ids={k: v for k, v in ids.items() if k},
            )
        message = str(data.get("message") or f"HubSpot answered {status}")
        if status == 429:
            if data.get("policyName") == "DAILY":
                resume = next_midnight(now, str(settings.get("timezone") or "UTC"))
                wait = (resume - now).total_seconds()
                return Verdict(
                    Outcome(
                        ok=False,
                        error=f"HubSpot daily limit reached: {message} Paused until "
                        f"{resume.isoformat()}.",
                        retry_after=wait,
                        status_code=status,
                        response=excerpt,
                    ),
                    pause_until=resume,
                )
            return Verdict(
                Outcome(
                    ok=False,
                    error=f"HubSpot rate limit: {message}",
                    retry_after=retry_after_seconds(response) or 1.0,
                    status_code=status,
                    response=excerpt,
                )
            )
        return Verdict(
            Outcome(
                ok=False,
                error=f"HubSpot answered {status}: {message}",
                permanent=status in PERMANENT_STATUSES,
                retry_after=retry_after_seconds(response),
                status_code=status,
                response=excerpt,
            )
        )


def _base(settings: Mapping[str, Any]) -> str:
    return str(settings.get("api_base_url") or DEFAULT_API_BASE).rstrip("/")


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), BATCH_LIMIT):
        yield items[start : start + BATCH_LIMIT]


def _named_inputs(context: Any, keys: set[str]) -> set[str]:
    """The inputs (by lower-cased e-mail) an error's context names: HubSpot puts
    them in lists under names such as `ids`; any value that is one of the call's
    e-mails counts."""
    values: list[Any] = []
    if isinstance(context, dict):
        for value in context.values():
            values.extend(value if isinstance(value, list) else [value])
    return {str(v).strip().lower() for v in values if isinstance(v, str)} & keys


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


CONNECTOR = HubSpotConnector()
