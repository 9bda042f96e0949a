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
  token endpoint down (5xx, 429, timeout, a 2xx without a token): retried.
  The grant itself is partnerloop.integrations.oauth's.
- 429, 5xx, other statuses, timeouts, connection errors: retried (Retry-After
  honoured when given).

`Sforce-Limit-Info: api-usage=18/5000` is logged at debug level (numbers only;
nothing about the customer is ever logged).

Several contacts in one call (a batch of due messages) go through the sObject
Collections upsert: `PATCH {instance_url}/services/data/{api_version}/composite/
sobjects/{object}/{external_id_field}` with `{"allOrNone": false, "records":
[{"attributes": {"type": object}, <external id field>: value, ...fields}]}`, up
to 200 records a call (API v46.0 and later; the default v60.0 qualifies). The
batch is deduplicated by key first (the last contact wins). Salesforce answers
200 with one `{id, success, errors: [{statusCode, message, fields}], created}`
per record in input order: a success gives `remote_ids`, a record error
(DUPLICATES_DETECTED, INVALID_FIELD, ...) puts the contact in
`Verdict.rejected` with Salesforce's message, and the rest count as delivered;
every contact refused makes the outcome itself a permanent failure. With
allow_duplicates "true" the duplicate rule header goes with the first call
(it only lets through what a rule allows saving). A whole call's answer is
judged as above: REQUEST_LIMIT_EXCEEDED pauses, INVALID_SESSION_ID refreshes
once, other permanent refusals reject that call's contacts while the other
calls count, and the first retryable failure ends the batch (its retry redoes
the calls already made, harmlessly: upsert). Before v46.0 the contacts go one
PATCH at a time with the same rules.

Current values (`read_contacts`, for conflict policies): `GET .../query?q=SELECT
Id, <external id field>, <mapped fields>, LastModifiedDate FROM <object> WHERE
<external id field> IN ('k1', 'k2')` (values escaped per SOQL's quoted-string
rules; field names must be API names), following `nextRecordsUrl` while `done`
is false. LastModifiedDate stands for every field's time.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from partnerloop.core.clock import parse_datetime, utcnow
from partnerloop.core.errors import InvalidInput
from partnerloop.core.http import retry_after_seconds
from partnerloop.integrations import oauth
from partnerloop.integrations.crm import ContactsRead, CrmRecord, Verdict
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
# sObject Collections upsert: up to 200 records a call, from API version 46.0.
COLLECTION_LIMIT = 200
COLLECTIONS_SINCE = 46
# A query's external ids per call: the SOQL travels in the URL, kept well below
# the ~16 KB Salesforce takes in a request line.
QUERY_KEYS = 100
QUERY_CHARS = 4000
MAX_QUERY_PAGES = 50  # a guard: an IN list of 100 keys fits in one 2000-record page

_API_VERSION = re.compile(r"^v\d{2,3}\.0$")
# A field's API name (custom ones end in __c, managed ones start with ns__).
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Amount text as the field mapping writes it ("100.00"), never a float.
_DECIMAL_TEXT = re.compile(r"^-?\d+\.\d+$")
# How Salesforce writes a DateTime field: 2026-11-24T09:30:00.000+0000.
_SF_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.000\+0000$")
# SOQL's escape sequences inside a quoted string (the SOQL reference, "Quoted
# String Escape Sequences"); LIKE's \_ and \% do not apply to IN.
_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


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

    def collection_url(self) -> str:
        return (
            f"{self.instance_url}/services/data/{self.api_version}/composite/sobjects/"
            f"{self.object}/{self.external_id_field}"
        )

    def query_url(self) -> str:
        return f"{self.instance_url}/services/data/{self.api_version}/query"

    @property
    def supports_collections(self) -> bool:
        """sObject Collections upsert exists from API version 46.0."""
        try:
            return int(self.api_version.removeprefix("v").split(".")[0]) >= COLLECTIONS_SINCE
        except ValueError:
            return False


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
    # Fields whose changes (polled every pull_every_minutes) go back to the shop customer.
    list_settings: Sequence[str] = ("write_back",)
    credential_fields: Sequence[str] = ("access_token", *oauth.APP_FIELDS)

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
        for name in settings.get("write_back") or ():
            if len(name) > 80 or not _API_NAME.match(name):
                raise _invalid(f"write_back {name!r} is not a field API name.", "write_back")
        if settings.get("write_back") and not settings.get("pull_every_minutes"):
            # Salesforce sends no webhooks: without a poll the fields would never come back.
            raise _invalid(
                "write_back needs pull_every_minutes: Salesforce is polled for changes.",
                "pull_every_minutes",
            )

    def as_stored(self, value: Any) -> Any:
        """Our value as Salesforce gives it back, so conflicts compare like with like.
        Amounts go out as decimal text ("100.00") but a Currency or Number field
        reads back as a number (100.0): decimal text becomes a Decimal, which
        compares by value with the Decimals `read_contacts` returns for numbers
        (and is sent as the same text again). Whole numbers, booleans, dates and
        other text are kept as Salesforce keeps them. A Text field holding decimal
        text therefore compares unequal and is rewritten with the same text."""
        if isinstance(value, str) and _DECIMAL_TEXT.match(value):
            return Decimal(value)
        return value

    def upsert_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        contacts: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> Verdict:
        """Upsert contacts (mapped fields that include the external id field): one
        contact by its own PATCH, several through sObject Collections (API v46.0
        and later; one by one on older versions)."""
        target = _Target.of(settings)
        if not credentials.get("access_token"):
            return Verdict(
                Outcome(
                    ok=False,
                    error="reconnect Salesforce: no access token (credentials.access_token)",
                    permanent=True,
                )
            )
        if not contacts:
            return Verdict(Outcome(ok=True, response="nothing to send"))
        if len(contacts) == 1:
            return self._upsert_one(client, target, credentials, contacts[0], now=now)
        unique: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for contact in contacts:
            value = _key_value(target, contact)
            if value is None:
                continue  # no key to upsert by (the deliverer never passes one)
            unique.pop(value.lower(), None)  # the same key twice: the last one wins
            unique[value.lower()] = (value, contact)
        if not unique:
            return _no_key(target)
        if target.supports_collections:
            return self._upsert_collections(client, target, credentials, unique, now=now)
        return self._upsert_each(client, target, credentials, unique, now=now)

    def _upsert_each(
        self,
        client: httpx.Client,
        target: _Target,
        credentials: Mapping[str, str],
        unique: Mapping[str, tuple[str, Mapping[str, Any]]],
        *,
        now: datetime,
    ) -> Verdict:
        """Before API v46.0: one PATCH per contact. A contact refused for good is
        rejected and the others go on; the first retryable failure ends the batch
        (its retry redoes the ones already sent, harmlessly: upsert)."""
        batch = _Batch(len(unique), calls=len(unique))
        current = dict(credentials)
        refreshed = False
        for key, (_, contact) in unique.items():
            verdict = self._upsert_one(client, target, current, contact, now=now)
            if verdict.credentials is not None:
                current, refreshed = dict(verdict.credentials), True
            if not verdict.outcome.ok and not verdict.outcome.permanent:
                return Verdict(verdict.outcome, verdict.pause_until, current if refreshed else None)
            if verdict.outcome.permanent and (verdict.outcome.error or "").startswith("reconnect "):
                # Every other contact would be refused the same way.
                return Verdict(verdict.outcome, credentials=current if refreshed else None)
            batch.settle(verdict, [key])
        return batch.verdict("Salesforce", current if refreshed else None)

    def _upsert_collections(
        self,
        client: httpx.Client,
        target: _Target,
        credentials: Mapping[str, str],
        unique: Mapping[str, tuple[str, Mapping[str, Any]]],
        *,
        now: datetime,
    ) -> Verdict:
        """Calls of up to 200 records to the sObject Collections upsert."""
        items = list(unique.items())
        chunks = [
            items[start : start + COLLECTION_LIMIT]
            for start in range(0, len(items), COLLECTION_LIMIT)
        ]
        batch = _Batch(len(items), calls=len(chunks))
        session = _Session(client, target, credentials)
        for chunk in chunks:
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": target.object}, **_record(target, value, contact)}
                    for _, (value, contact) in chunk
                ],
            }
            keys = [key for key, _ in chunk]
            # The header lets through only what a rule allows saving anyway: sending
            # it from the start saves repeating the call for those records.
            response = session.patch(
                target.collection_url(), body, allow_save=target.allow_duplicates
            )
            if isinstance(response, Verdict):
                return session.with_credentials(response)
            if 200 <= response.status_code < 300:
                verdict = _judge_collection(response, keys)
                if not verdict.outcome.ok:
                    return session.with_credentials(verdict)
                batch.settle(verdict, keys)
                continue
            verdict = _judge(response, target=target, value=f"{len(keys)} records", now=now)
            if not verdict.outcome.permanent or response.status_code == 401:
                return session.with_credentials(verdict)
            batch.settle(verdict, keys)
        return batch.verdict("Salesforce", session.credentials if session.refreshed else None)

    def _upsert_one(
        self,
        client: httpx.Client,
        target: _Target,
        credentials: Mapping[str, str],
        contact: Mapping[str, Any],
        *,
        now: datetime,
    ) -> Verdict:
        key = _key_name(target, contact)
        value = _key_value(target, contact)
        if value is None:
            return _no_key(target)
        url = target.upsert_url(value)
        body = {name: v for name, v in contact.items() if name != key and v is not None}
        session = _Session(client, target, credentials)
        response = session.patch(url, body, allow_save=False)
        if isinstance(response, Verdict):
            return session.with_credentials(response)
        duplicates = _duplicates(response)
        if duplicates is not None and target.allow_duplicates and duplicates.allow_save:
            token = session.credentials["access_token"]
            again = _send(client, url, body, token, allow_save=True)
            if isinstance(again, Outcome):
                return session.with_credentials(Verdict(again))
            response = again
        return session.with_credentials(_judge(response, target=target, value=value, now=now))

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
        """The records' current values by external id, for conflict policies:
        `SELECT Id, <external id>, <properties>, LastModifiedDate FROM <object>
        WHERE <external id> IN (...)` through the query resource, following
        `nextRecordsUrl` while `done` is false. {lower-cased key: CrmRecord(values
        under the names asked for, updated_at=LastModifiedDate)}; a key Salesforce
        has no record for is absent. Numbers come back as Decimals (see
        `as_stored`), date-times in our ISO form when they are whole seconds. A
        token renewed on the way is not kept (a read returns no credentials):
        the upsert that follows renews it again."""
        target = _Target.of(settings)
        if not credentials.get("access_token"):
            return Verdict(
                Outcome(
                    ok=False,
                    error="reconnect Salesforce: no access token (credentials.access_token)",
                    permanent=True,
                )
            )
        names = [target.external_id_field, *properties]
        # Names go into the SOQL text as they are: only API names, nothing else.
        bad = next(
            (n for n in [target.object, *names] if len(n) > 80 or not _API_NAME.match(n)), None
        )
        if bad is not None:
            return Verdict(
                Outcome(
                    ok=False,
                    error=f"{bad!r} is not a Salesforce field API name: fix the field mapping",
                    permanent=True,
                )
            )
        fields = _unique_ignoring_case(["Id", *names, "LastModifiedDate"])
        wanted = list(dict.fromkeys(str(key) for key in keys if key))
        session = _Session(client, target, credentials)
        records: dict[str, CrmRecord] = {}
        for group in _key_groups(wanted):
            rows = query(session, _soql(target, fields, group), now=now)
            if isinstance(rows, Verdict):
                return session.with_credentials(rows)
            for record in rows:
                found = _record_of(record, target, properties)
                if found is not None:
                    records[found[0]] = found[1]
        return ContactsRead(records, dict(session.credentials) if session.refreshed else None)


def query(session: _Session, soql: str, *, now: datetime) -> list[dict[str, Any]] | Verdict:
    """Every record a SOQL query gives, through the query resource, following
    `nextRecordsUrl` while `done` is false (at most MAX_QUERY_PAGES pages).
    Numbers come back exact (Decimals)."""
    target = session.target
    records: list[dict[str, Any]] = []
    url: str | None = target.query_url()
    params: dict[str, str] | None = {"q": soql}
    for _ in range(MAX_QUERY_PAGES):
        if url is None:
            break
        response = session.get(url, params)
        if isinstance(response, Verdict):
            return response
        if response.status_code != 200:
            return _judge(response, target=target, value="a query", now=now)
        page = _json(response, exact=True)
        page = page if isinstance(page, dict) else {}
        records.extend(_dicts(page.get("records")))
        url, params = _next_page(target, page), None
    return records


def _send(
    client: httpx.Client, url: str, body: Mapping[str, Any], token: str, *, allow_save: bool
) -> httpx.Response | Outcome:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if allow_save:
        headers[DUPLICATE_RULE_HEADER] = "allowSave=true"
    try:
        response = client.patch(url, json=_jsonable(dict(body)), headers=headers)
    except httpx.TimeoutException:
        return Outcome(ok=False, error="Salesforce did not answer in time")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not reach Salesforce: {type(error).__name__}")
    _log_usage(response)
    return response


def _get(
    client: httpx.Client, url: str, params: Mapping[str, str] | None, token: str
) -> httpx.Response | Outcome:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        response = client.get(url, params=params, headers=headers)
    except httpx.TimeoutException:
        return Outcome(ok=False, error="Salesforce did not answer the query in time")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not reach Salesforce: {type(error).__name__}")
    _log_usage(response)
    return response


def _log_usage(response: httpx.Response) -> None:
    usage = response.headers.get("sforce-limit-info")
    if usage:
        log.debug("salesforce %s", usage)  # e.g. api-usage=18/5000: counts only


def _jsonable(value: Any) -> Any:
    """Decimals (from `as_stored`) go out as the decimal text they came from."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class _Session(oauth.Tokens):
    """The credentials of a batch call or a query, refreshed once on a 401 (a
    Salesforce token answer gives no lifetime to renew it ahead by)."""

    def __init__(self, client: httpx.Client, target: _Target, credentials: Mapping[str, str]):
        super().__init__(credentials, utcnow(), ahead=False)
        self.client = client
        self.target = target

    @property
    def refreshed(self) -> bool:
        return self.renewed

    def renewal(self) -> dict[str, str]:
        return _refresh(self.client, self.target, self.credentials, self.now)

    def patch(
        self, url: str, body: Mapping[str, Any], *, allow_save: bool
    ) -> httpx.Response | Verdict:
        return self._call(lambda token: _send(self.client, url, body, token, allow_save=allow_save))

    def get(self, url: str, params: Mapping[str, str] | None) -> httpx.Response | Verdict:
        return self._call(lambda token: _get(self.client, url, params, token))

    def _call(self, send: Callable[[str], httpx.Response | Outcome]) -> httpx.Response | Verdict:
        try:
            # INVALID_SESSION_ID: the token expired; renew it once, repeat once.
            response = self.authorized(lambda: send(self.credentials["access_token"]))
        except _Refused as refused:
            return Verdict(refused.outcome)
        return Verdict(response) if isinstance(response, Outcome) else response


class _Batch:
    """The calls of one batch, combined into one Verdict: contacts refused for good
    go to `rejected`, the others count as delivered."""

    def __init__(self, total: int, *, calls: int) -> None:
        self.total = total
        self.calls = calls
        self.remote_ids: dict[str, str] = {}
        self.rejected: dict[str, str] = {}
        self.whole: list[Outcome] = []  # calls refused as a whole, for good
        self.last: Outcome | None = None

    def settle(self, verdict: Verdict, keys: Sequence[str]) -> None:
        """A call's verdict: accepted (with its own rejections), or refused for good."""
        self.last = verdict.outcome
        if verdict.outcome.ok:
            self.remote_ids.update(verdict.remote_ids or {})
            self.rejected.update(verdict.rejected or {})
            return
        self.whole.append(verdict.outcome)
        self.rejected.update(dict.fromkeys(keys, verdict.outcome.error or "refused"))

    def verdict(self, vendor: str, credentials: Mapping[str, str] | None) -> Verdict:
        last = self.last or Outcome(ok=True, response="nothing to send")
        if len(self.rejected) < self.total:
            return Verdict(
                Outcome(ok=True, status_code=last.status_code, response=last.response),
                credentials=credentials,
                remote_ids=self.remote_ids,
                rejected=self.rejected or None,
            )
        # Every contact refused: nothing was delivered, the outcome says so.
        if self.calls == 1 and self.whole:
            outcome = self.whole[0]
        else:
            first = next(iter(self.rejected.values()))
            outcome = Outcome(
                ok=False,
                error=f"{vendor} refused every contact: {first}",
                permanent=True,
                status_code=last.status_code,
                response=last.response,
            )
        return Verdict(
            outcome, credentials=credentials, remote_ids=self.remote_ids, rejected=self.rejected
        )


def _refresh(
    client: httpx.Client, target: _Target, credentials: Mapping[str, str], now: datetime
) -> dict[str, str]:
    """A new access token from the refresh token; raises _Refused with the outcome."""
    if not credentials.get("refresh_token") or not credentials.get("client_id"):
        raise _Refused(
            Outcome(
                ok=False,
                error="reconnect Salesforce: the access token expired and there is no "
                "refresh_token/client_id to renew it",
                status_code=401,
                permanent=True,
            )
        )
    form = {"client_id": credentials["client_id"]}
    if credentials.get("client_secret"):
        form["client_secret"] = credentials["client_secret"]
    answer = oauth.refresh(
        client,
        target.instance_url + OAUTH_PATH,
        form=form,
        credentials=credentials,
        now=now,
        vendor="Salesforce",
        message_of=oauth.error_reason,
        extra=partial(_note_instance, target),
    )
    if isinstance(answer, Outcome):
        raise _Refused(answer)
    return answer


def _note_instance(target: _Target, answer: Mapping[str, Any]) -> dict[str, str]:
    """Nothing to keep: the configured instance_url stays authoritative (the
    merchant's My Domain); the token endpoint's differs only after an org
    migration, which is logged."""
    named = answer.get("instance_url")
    if isinstance(named, str) and named.rstrip("/") != target.instance_url:
        log.info("salesforce token refresh names instance %s", named)
    return {}


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
        record_id = data.get("id") if isinstance(data, dict) else None
        return Verdict(
            Outcome(ok=True, status_code=status, response=excerpt),
            remote_ids={value.lower(): str(record_id)} if record_id else None,
        )

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
                    retry_after=retry_after_seconds(response) or CONCURRENCY_LIMIT_WAIT,
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
            retry_after=retry_after_seconds(response),
        )
    )


def _json(response: httpx.Response, *, exact: bool = False) -> Any:
    """The JSON body, or None. `exact`: fractions as Decimals (record values)."""
    try:
        if not response.content:
            return None
        return json.loads(response.content, parse_float=Decimal if exact else float)
    except ValueError:
        return None


def _judge_collection(response: httpx.Response, keys: Sequence[str]) -> Verdict:
    """A 2xx (documented: 200) from sObject Collections: one UpsertResult per
    record, in input order."""
    excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
    results = _json(response)
    if not isinstance(results, list) or len(_dicts(results)) != len(keys):
        # Not the documented answer: we cannot tell which record fared how.
        count = len(results) if isinstance(results, list) else "no list of"
        return Verdict(
            Outcome(
                ok=False,
                error=f"Salesforce answered {count} results for {len(keys)} records",
                status_code=response.status_code,
                response=excerpt,
            )
        )
    remote_ids: dict[str, str] = {}
    rejected: dict[str, str] = {}
    for key, result in zip(keys, results, strict=True):
        if result.get("success") is True:
            if result.get("id"):
                remote_ids[key] = str(result["id"])
        else:
            rejected[key] = _messages(result.get("errors")) or "Salesforce did not save the record"
    return Verdict(
        Outcome(ok=True, status_code=response.status_code, response=excerpt),
        remote_ids=remote_ids,
        rejected=rejected or None,
    )


def _key_name(target: _Target, contact: Mapping[str, Any]) -> str | None:
    # Salesforce field names are case-insensitive.
    wanted = target.external_id_field.lower()
    return next((name for name in contact if name.lower() == wanted), None)


def _key_value(target: _Target, contact: Mapping[str, Any]) -> str | None:
    key = _key_name(target, contact)
    value = contact.get(key) if key is not None else None
    return None if value is None or value == "" else str(value)


def _no_key(target: _Target) -> Verdict:
    return Verdict(
        Outcome(
            ok=False,
            error=f"the field mapping gives no {target.external_id_field} (the upsert "
            "key): map customer_id to it",
            permanent=True,
        )
    )


def _record(target: _Target, value: str, contact: Mapping[str, Any]) -> dict[str, Any]:
    """A collection record: the external id field (by its configured name) and the
    other mapped fields; None is never sent (it would blank a field)."""
    wanted = target.external_id_field.lower()
    fields = {n: v for n, v in contact.items() if n.lower() != wanted and v is not None}
    return {target.external_id_field: value, **fields}


def soql_quote(value: str) -> str:
    """A SOQL string literal: quotes, backslashes and control characters escaped."""
    return "'" + "".join(_SOQL_ESCAPES.get(c, c) for c in value) + "'"


def _soql(target: _Target, fields: Sequence[str], keys: Sequence[str]) -> str:
    """The query of these keys: names are checked API names, values quoted literals."""
    wanted = ", ".join(soql_quote(key) for key in keys)
    return (
        f"SELECT {', '.join(fields)} FROM {target.object} "  # noqa: S608 (names checked, values quoted)
        f"WHERE {target.external_id_field} IN ({wanted})"
    )


def _key_groups(keys: Sequence[str]) -> list[list[str]]:
    groups: list[list[str]] = []
    size = 0
    for key in keys:
        length = len(soql_quote(key)) + 2
        if not groups or len(groups[-1]) >= QUERY_KEYS or size + length > QUERY_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += length
    return groups


def _unique_ignoring_case(names: Sequence[str]) -> list[str]:
    # SOQL refuses a field selected twice ("duplicate field selected").
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(name.lower(), name)
    return list(first.values())


def _next_page(target: _Target, page: Mapping[str, Any]) -> str | None:
    following = page.get("nextRecordsUrl")
    if page.get("done") is not False or not isinstance(following, str):
        return None
    # A path on the same instance; never follow an answer to another host.
    return target.instance_url + following if following.startswith("/services/data/") else None


def _record_of(
    record: Mapping[str, Any], target: _Target, properties: Sequence[str]
) -> tuple[str, CrmRecord] | None:
    # Salesforce answers with each field's own spelling; ours may differ in case.
    by_name = {name.lower(): value for name, value in record.items() if name != "attributes"}
    key = by_name.get(target.external_id_field.lower())
    if key is None or key == "":
        return None
    values = {
        name: _as_ours(by_name[name.lower()]) for name in properties if name.lower() in by_name
    }
    modified = by_name.get("lastmodifieddate")
    updated_at = None
    if isinstance(modified, str):
        try:
            updated_at = parse_datetime(modified)
        except ValueError:
            updated_at = None
    return str(key).lower(), CrmRecord(values=values, updated_at=updated_at)


def _as_ours(value: Any) -> Any:
    """A value read from Salesforce in the form partnerloop writes it."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)  # a Number(18,0) field reads back as 2.0
    if isinstance(value, str):
        whole_seconds = _SF_DATETIME.match(value)
        if whole_seconds:
            return f"{whole_seconds[1]}Z"  # the mapping's "iso" date format
    return value


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
        # REST errors say errorCode; a collection's per-record errors say statusCode.
        code = error.get("errorCode") or error.get("statusCode") or "ERROR"
        text = f"{code}: {error.get('message') or ''}".strip()
        fields = error.get("fields")
        if isinstance(fields, list) and fields:
            text += f" (fields: {', '.join(str(f) for f in fields)})"
        parts.append(text)
    return "; ".join(parts)


CONNECTOR = SalesforceConnector()
