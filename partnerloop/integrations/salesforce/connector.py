"""Salesforce (REST API): customers become Contacts (or Leads), upserted by external id.

`PATCH {instance_url}/services/data/{api_version}/sobjects/{object}/{external_id_field}/{value}`
with the other mapped fields as the JSON body creates the record or updates the
one whose External ID field holds `value`: our own customer id, which never
changes, so a retried delivery updates the same record and no duplicate
appears. The external id field is the merchant's custom field (default
`Partnerloop_Customer_Id__c`, marked External ID and Unique) and is never sent
inside the body. Authentication: an OAuth access token (`Authorization:
Bearer`), refreshed with the refresh token when Salesforce says it expired.

Settings: `instance_url` (the org's https://<domain>.my.salesforce.com),
`api_version` (default v60.0), `object` (Contact or Lead), `external_id_field`,
`allow_duplicates` ("true" to save through a duplicate rule that allows it).
Credentials: access_token, refresh_token, client_id, client_secret.

Answers and what they mean (../shared/fixtures/NOTES.md section 6); errors are
a JSON array `[{"message", "errorCode", "fields"}]`:
- 201 created, 200 (`created: false`, newer API versions) or 204 (older ones)
  updated: delivered.
- 300: the external id matches several records (the body lists their URLs):
  dead-lettered naming them; the merchant merges them, then replays.
- 400 DUPLICATES_DETECTED: a duplicate rule matched other records (the result
  is under `duplicateResut`, Salesforce's own misspelling, or
  `duplicateResult`). With allow_duplicates "true" and a rule that allows
  saving, the call is repeated at once with `Sforce-Duplicate-Rule-Header:
  allowSave=true`; otherwise dead-lettered naming the rule and the matched
  record ids.
- 400/404 other errors (INVALID_FIELD, NOT_FOUND for a missing external id
  field, ...) and other 403s (permissions): our payload or the org's setup is
  wrong: dead-lettered with Salesforce's message, replayable after the fix.
- 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded.": the org's API
  request allowance is a rolling 24-hour window, so there is no reset time to
  wait for; the whole connector pauses for an hour and tries again. The
  concurrency variant ("ConcurrentPerOrgLongTxn Limit exceeded.") clears in
  seconds: retried after a minute, no pause.
- 401 INVALID_SESSION_ID: the access token expired. `POST
  {instance_url}/services/oauth2/token` (grant_type=refresh_token) gives a new
  one; the call is repeated once with it and the new token is stored (also when
  that repeat fails). The refresh refused (`invalid_grant`, e.g. "expired
  access/refresh token"): dead-lettered "reconnect Salesforce: ...". The
  token endpoint down (5xx, timeout): retried.
- 429, 5xx, other statuses, timeouts, connection errors: retried (Retry-After
  honoured when given).

`Sforce-Limit-Info: api-usage=18/5000` is logged at debug level (numbers only;
nothing about the customer is ever logged).

Several contacts in one delivery run in turn; the first failure ends the
delivery and its retry redoes the ones already sent, harmlessly (upsert).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from partnerloop.core.errors import InvalidInput
from partnerloop.integrations.crm import Verdict
from partnerloop.sync.worker import Outcome

log = logging.getLogger("partnerloop.salesforce")

KIND = "salesforce"
DEFAULT_API_VERSION = "v60.0"
DEFAULT_OBJECT = "Contact"
OBJECTS = ("Contact", "Lead")
DEFAULT_EXTERNAL_ID_FIELD = "Partnerloop_Customer_Id__c"
OAUTH_PATH = "/services/oauth2/token"
DUPLICATE_RULE_HEADER = "Sforce-Duplicate-Rule-Header"
MAX_RESPONSE_CHARS = 1000
# The org's API allowance is a rolling 24 h total: no reset time is given, so we
# look again in an hour (a few calls at most per hour while the org is over).
DAILY_LIMIT_PAUSE = timedelta(hours=1)
CONCURRENCY_LIMIT_WAIT = 60.0
PERMANENT_STATUSES = (400, 403, 404, 405, 409, 415, 422)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

_API_VERSION = re.compile(r"^v\d{2,3}\.0$")
# A field's API name (custom ones end in __c, managed ones start with ns__).
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _invalid(detail: str, field: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_setting", field=f"settings.{field}")


@dataclass(frozen=True)
class _Target:
    instance_url: str
    api_version: str
    object: str
    external_id_field: str
    allow_duplicates: bool

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> _Target:
        return cls(
            instance_url=str(settings.get("instance_url") or "").rstrip("/"),
            api_version=str(settings.get("api_version") or DEFAULT_API_VERSION),
            object=str(settings.get("object") or DEFAULT_OBJECT),
            external_id_field=str(settings.get("external_id_field") or DEFAULT_EXTERNAL_ID_FIELD),
            allow_duplicates=str(settings.get("allow_duplicates") or "false").lower() == "true",
        )

    def upsert_url(self, value: str) -> str:
        return (
            f"{self.instance_url}/services/data/{self.api_version}/sobjects/"
            f"{self.object}/{self.external_id_field}/{quote(value, safe='')}"
        )


class _Refused(Exception):
    """The token endpoint's answer, as the delivery's outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class SalesforceConnector:
    kind = KIND
    key_property = DEFAULT_EXTERNAL_ID_FIELD
    settings_fields: Mapping[str, bool] = {
        "instance_url": True,
        "api_version": False,
        "object": False,
        "external_id_field": False,
        "allow_duplicates": False,
    }
    credential_fields: Sequence[str] = (
        "access_token",
        "refresh_token",
        "client_id",
        "client_secret",
    )

    def key_property_for(self, settings: Mapping[str, Any]) -> str:
        """The External ID field this connector upserts by (settings.external_id_field)."""
        return str(settings.get("external_id_field") or self.key_property)

    def check_secret(self, secret: str | None) -> str:
        """No inbound signing yet: the secret is kept as given, or empty."""
        return secret or ""

    def validate(self, settings: Mapping[str, Any]) -> None:
        url = str(settings.get("instance_url") or "")
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
            # The bearer token travels with every call: never in clear text.
            raise _invalid(
                "instance_url must be https, e.g. https://acme.my.salesforce.com.",
                "instance_url",
            )
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise _invalid(
                "instance_url is the org's address only, e.g. https://acme.my.salesforce.com "
                "(no path).",
                "instance_url",
            )
        version = str(settings.get("api_version") or DEFAULT_API_VERSION)
        if not _API_VERSION.match(version):
            raise _invalid(
                f"api_version {version!r} is not a Salesforce API version; write it like "
                f"{DEFAULT_API_VERSION}.",
                "api_version",
            )
        sobject = str(settings.get("object") or DEFAULT_OBJECT)
        if sobject not in OBJECTS:
            raise _invalid(f"object must be one of: {', '.join(OBJECTS)}.", "object")
        field = str(settings.get("external_id_field") or DEFAULT_EXTERNAL_ID_FIELD)
        if len(field) > 80 or not _API_NAME.match(field):
            raise _invalid(
                f"external_id_field {field!r} is not a field API name, e.g. "
                f"{DEFAULT_EXTERNAL_ID_FIELD}.",
                "external_id_field",
            )
        allow = str(settings.get("allow_duplicates") or "false").lower()
        if allow not in ("true", "false"):
            raise _invalid('allow_duplicates must be "true" or "false".', "allow_duplicates")

    def upsert_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        contacts: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> Verdict:
        """Upsert each contact (mapped fields that include the external id field) in turn."""
        target = _Target.of(settings)
        if not credentials.get("access_token"):
            return Verdict(
                Outcome(
                    ok=False,
                    error="reconnect Salesforce: no access token (credentials.access_token)",
                    permanent=True,
                )
            )
        current = dict(credentials)
        refreshed = False
        last = Verdict(Outcome(ok=True, response="nothing to send"))
        for contact in contacts:
            verdict = self._upsert_one(client, target, current, contact, now=now)
            if verdict.credentials is not None:
                current, refreshed = dict(verdict.credentials), True
            last = Verdict(verdict.outcome, pause_until=verdict.pause_until)
            if not verdict.outcome.ok:
                break
        return Verdict(last.outcome, last.pause_until, current if refreshed else None)

    def _upsert_one(
        self,
        client: httpx.Client,
        target: _Target,
        credentials: Mapping[str, str],
        contact: Mapping[str, Any],
        *,
        now: datetime,
    ) -> Verdict:
        # Salesforce field names are case-insensitive.
        wanted = target.external_id_field.lower()
        key = next((name for name in contact if name.lower() == wanted), None)
        value = contact.get(key) if key is not None else None
        if value is None or value == "":
            return Verdict(
                Outcome(
                    ok=False,
                    error=f"the field mapping gives no {target.external_id_field} (the upsert "
                    "key): map customer_id to it",
                    permanent=True,
                )
            )
        url = target.upsert_url(str(value))
        body = {name: v for name, v in contact.items() if name != key and v is not None}
        token = credentials["access_token"]

        response = _send(client, url, body, token, allow_save=False)
        if isinstance(response, Outcome):
            return Verdict(response)
        new_credentials: dict[str, str] | None = None
        if response.status_code == 401:
            try:
                new_credentials = _refresh(client, target, credentials)
            except _Refused as refused:
                return Verdict(refused.outcome)
            token = new_credentials["access_token"]
            response = _send(client, url, body, token, allow_save=False)
            if isinstance(response, Outcome):
                return Verdict(response, credentials=new_credentials)
        duplicates = _duplicates(response)
        if duplicates is not None and target.allow_duplicates and duplicates.allow_save:
            response = _send(client, url, body, token, allow_save=True)
            if isinstance(response, Outcome):
                return Verdict(response, credentials=new_credentials)
        verdict = _judge(response, target=target, value=str(value), now=now)
        return Verdict(verdict.outcome, verdict.pause_until, new_credentials)


def _send(
    client: httpx.Client, url: str, body: Mapping[str, Any], token: str, *, allow_save: bool
) -> httpx.Response | Outcome:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if allow_save:
        headers[DUPLICATE_RULE_HEADER] = "allowSave=true"
    try:
        response = client.patch(url, json=dict(body), headers=headers)
    except httpx.TimeoutException:
        return Outcome(ok=False, error="Salesforce did not answer in time")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not reach Salesforce: {type(error).__name__}")
    usage = response.headers.get("sforce-limit-info")
    if usage:
        log.debug("salesforce %s", usage)  # e.g. api-usage=18/5000: counts only
    return response


def _refresh(
    client: httpx.Client, target: _Target, credentials: Mapping[str, str]
) -> dict[str, str]:
    """A new access token from the refresh token; raises _Refused with the outcome."""
    refresh_token = credentials.get("refresh_token")
    client_id = credentials.get("client_id")
    if not refresh_token or not client_id:
        raise _Refused(
            Outcome(
                ok=False,
                error="reconnect Salesforce: the access token expired and there is no "
                "refresh_token/client_id to renew it",
                status_code=401,
                permanent=True,
            )
        )
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if credentials.get("client_secret"):
        form["client_secret"] = credentials["client_secret"]
    try:
        response = client.post(
            target.instance_url + OAUTH_PATH, data=form, headers={"Accept": "application/json"}
        )
    except httpx.TimeoutException:
        raise _Refused(
            Outcome(ok=False, error="Salesforce's token endpoint did not answer in time")
        ) from None
    except httpx.HTTPError as error:
        raise _Refused(
            Outcome(
                ok=False,
                error=f"could not reach Salesforce's token endpoint: {type(error).__name__}",
            )
        ) from None
    status = response.status_code
    # Never keep the token endpoint's answer in the attempt log: it holds tokens.
    data = _json(response)
    data = data if isinstance(data, dict) else {}
    token = data.get("access_token")
    if status == 200 and isinstance(token, str) and token:
        updated = {**credentials, "access_token": token}
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated:  # refresh token rotation
            updated["refresh_token"] = rotated
        new_instance = data.get("instance_url")
        if isinstance(new_instance, str) and new_instance.rstrip("/") != target.instance_url:
            # The configured instance_url stays authoritative (the merchant's My
            # Domain); the token endpoint's differs only after an org migration.
            log.info("salesforce token refresh names instance %s", new_instance)
        return updated
    if status >= 500 or status == 429:
        raise _Refused(
            Outcome(
                ok=False,
                error=f"Salesforce's token endpoint answered {status}",
                retry_after=_retry_after(response),
                status_code=status,
            )
        )
    code = str(data.get("error") or f"HTTP {status}")
    description = str(data.get("error_description") or code)
    raise _Refused(
        Outcome(
            ok=False,
            error=f"reconnect Salesforce: {description} ({code})",
            permanent=True,
            status_code=status,
        )
    )


@dataclass(frozen=True)
class _Duplicates:
    rule: str
    allow_save: bool
    record_ids: tuple[str, ...]
    message: str


def _duplicates(response: httpx.Response) -> _Duplicates | None:
    if response.status_code != 400:
        return None
    for error in _errors(response):
        if error.get("errorCode") != "DUPLICATES_DETECTED":
            continue
        # REST spells it `duplicateResut`; read the correct spelling too.
        result = error.get("duplicateResut") or error.get("duplicateResult") or {}
        result = result if isinstance(result, dict) else {}
        ids: list[str] = []
        for match in _dicts(result.get("matchResults")):
            for record in _dicts(match.get("matchRecords")):
                found = record.get("record")
                if isinstance(found, dict) and found.get("Id"):
                    ids.append(str(found["Id"]))
        return _Duplicates(
            rule=str(result.get("duplicateRule") or "a duplicate rule"),
            allow_save=bool(result.get("allowSave", False)),
            record_ids=tuple(ids),
            message=str(error.get("message") or result.get("errorMessage") or ""),
        )
    return None


def _judge(response: httpx.Response, *, target: _Target, value: str, now: datetime) -> Verdict:
    status = response.status_code
    excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
    if status in (200, 201, 204):
        data = _json(response)
        if isinstance(data, dict) and data.get("success") is False:
            return Verdict(
                Outcome(
                    ok=False,
                    error=f"Salesforce did not save the record: {_messages(data.get('errors'))}",
                    permanent=True,
                    status_code=status,
                    response=excerpt,
                )
            )
        return Verdict(Outcome(ok=True, status_code=status, response=excerpt))

    def outcome(error: str, *, permanent: bool, retry_after: float | None = None) -> Outcome:
        return Outcome(
            ok=False,
            error=error,
            permanent=permanent,
            retry_after=retry_after,
            status_code=status,
            response=excerpt,
        )

    if status == 300:
        data = _json(response)
        matches = [str(m) for m in data] if isinstance(data, list) else []
        return Verdict(
            outcome(
                f"Salesforce has {len(matches) or 'several'} {target.object} records with "
                f"{target.external_id_field} = {value}: {', '.join(matches) or excerpt}; merge "
                "them, then replay",
                permanent=True,
            )
        )
    errors = _errors(response)
    codes = {str(e.get("errorCode")) for e in errors}
    message = _messages(errors) or f"HTTP {status}"
    if status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
        if "concurrent" in message.lower():
            return Verdict(
                outcome(
                    f"Salesforce concurrency limit: {message}",
                    permanent=False,
                    retry_after=_retry_after(response) or CONCURRENCY_LIMIT_WAIT,
                )
            )
        # The org's 24 h rolling request limit: pause the connector for an hour.
        resume = now + DAILY_LIMIT_PAUSE
        return Verdict(
            outcome(
                f"Salesforce API request limit reached: {message} Paused until "
                f"{resume.isoformat()}.",
                permanent=False,
                retry_after=DAILY_LIMIT_PAUSE.total_seconds(),
            ),
            pause_until=resume,
        )
    duplicates = _duplicates(response)
    if duplicates is not None:
        records = ", ".join(duplicates.record_ids) or "unknown records"
        if duplicates.allow_save and not target.allow_duplicates:
            advice = 'set allow_duplicates to "true" to save anyway, or merge, then replay'
        elif duplicates.allow_save:
            advice = "Salesforce refused it even with allowSave; merge, then replay"
        else:
            advice = "the rule blocks saving; change the rule or merge, then replay"
        return Verdict(
            outcome(
                f"Salesforce duplicate rule {duplicates.rule} matched {records}: "
                f"{duplicates.message} ({advice})",
                permanent=True,
            )
        )
    if status == 401:
        return Verdict(
            outcome(
                f"reconnect Salesforce: the refreshed token was refused too: {message}",
                permanent=True,
            )
        )
    if status in PERMANENT_STATUSES:
        return Verdict(outcome(f"Salesforce answered {status}: {message}", permanent=True))
    return Verdict(
        outcome(
            f"Salesforce answered {status}: {message}",
            permanent=False,
            retry_after=_retry_after(response),
        )
    )


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except ValueError:
        return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """Salesforce's error array (a lone error object is taken as one)."""
    data = _json(response)
    if isinstance(data, dict):
        data = [data]
    return _dicts(data)


def _messages(errors: Any) -> str:
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        text = f"{error.get('errorCode') or 'ERROR'}: {error.get('message') or ''}".strip()
        fields = error.get("fields")
        if isinstance(fields, list) and fields:
            text += f" (fields: {', '.join(str(f) for f in fields)})"
        parts.append(text)
    return "; ".join(parts)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


CONNECTOR = SalesforceConnector()
