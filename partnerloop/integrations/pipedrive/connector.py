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
else `https://api.pipedrive.com`. Authentication: an API token in the
`x-api-token` header (Pipedrive also takes `?api_token=`, but a header keeps the
token out of URLs and access logs), or an OAuth access token as
`Authorization: Bearer` (preferred when both are given).

Answers, for every call:
- 2xx with `"success": true`: done (a 2xx without it is retried: not Pipedrive's).
- 429: the rate limit of the token/account: wait Retry-After, else the
  `x-ratelimit-reset` header (seconds until the window resets), else 2 s; the
  whole connector pauses that long, as every call would hit the same limit.
- 401: the token is wrong or was revoked; 403: the token's user may not do
  this. Both retried with a clear error (the merchant fixes the token or the
  permission; the attempt log says so).
- 400/404/422: our request is wrong (e.g. a custom field key that does not
  exist, a bad company domain): dead-lettered with Pipedrive's `error` (and
  `error_info`), replayable after the fix. Exception: 404 on the update means
  the person was deleted or merged between search and update; retried, and the
  next try searches again.
- 5xx, other statuses, timeouts, connection errors: retried.

Several contacts in one delivery run in turn; the first failure ends the
delivery and its retry redoes the ones already sent, harmlessly (search first).

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
from datetime import datetime, timedelta
from typing import Any

import httpx

from partnerloop.core.errors import InvalidInput
from partnerloop.integrations.crm import Verdict
from partnerloop.sync.worker import Outcome

KIND = "pipedrive"
DEFAULT_API_BASE = "https://api.pipedrive.com"
PERSONS_PATH = "/api/v2/persons"
SEARCH_PATH = "/api/v2/persons/search"
MAX_RESPONSE_CHARS = 1000
PERMANENT_STATUSES = (400, 404, 422)
CREDENTIAL_STATUSES = (401, 403)
DEFAULT_RATE_LIMIT_WAIT = 2.0
EMAIL_LABEL = "work"
# The subdomain of <company>.pipedrive.com: a DNS label.
_COMPANY_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)


class _Failed(Exception):
    """A call's answer that ends the delivery."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.error)
        self.verdict = verdict


def _base(settings: Mapping[str, Any]) -> str:
    explicit = settings.get("api_base_url")
    if explicit:
        return str(explicit).rstrip("/")
    domain = settings.get("company_domain")
    if domain:
        return f"https://{domain}.pipedrive.com"
    return DEFAULT_API_BASE


def _auth_headers(credentials: Mapping[str, str]) -> dict[str, str] | None:
    access_token = credentials.get("access_token")
    if access_token:
        return {"Authorization": f"Bearer {access_token}"}
    api_token = credentials.get("api_token")
    if api_token:
        return {"x-api-token": api_token}
    return None


class PipedriveConnector:
    kind = KIND
    key_property = "email"
    settings_fields: Mapping[str, bool] = {"company_domain": False}
    credential_fields: Sequence[str] = ("api_token", "access_token")

    def check_secret(self, secret: str | None) -> str:
        """Pipedrive webhooks carry no signature (HTTP Basic auth may come later)."""
        return secret or ""

    def validate(self, settings: Mapping[str, Any]) -> None:
        domain = settings.get("company_domain")
        if domain is not None and not _COMPANY_DOMAIN.match(str(domain)):
            raise InvalidInput(
                f"{domain!r} is not a Pipedrive company domain; give the part before "
                ".pipedrive.com, e.g. acme for https://acme.pipedrive.com.",
                code="invalid_setting",
                field="settings.company_domain",
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
        """Find each contact's person by e-mail, then update it or create one."""
        headers = _auth_headers(credentials)
        if headers is None:
            return Verdict(
                Outcome(
                    ok=False,
                    error="no Pipedrive token (credentials.api_token or credentials.access_token)",
                )
            )
        base = _base(settings)
        last: Verdict | None = None
        try:
            for contact in contacts:
                last = self._upsert_one(client, base, headers, contact, now=now)
        except _Failed as failed:
            return failed.verdict
        return last or Verdict(Outcome(ok=True, response="no contacts: nothing to sync"))

    def _upsert_one(
        self,
        client: httpx.Client,
        base: str,
        headers: Mapping[str, str],
        contact: Mapping[str, Any],
        *,
        now: datetime,
    ) -> Verdict:
        email = str(contact["email"])
        searched, found = self._call(
            client,
            "GET",
            base + SEARCH_PATH,
            "person search",
            headers=headers,
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
            verdict, _ = self._call(
                client,
                "POST",
                base + PERSONS_PATH,
                "person create",
                headers=headers,
                body=body,
                now=now,
            )
            return verdict
        if not body:  # only the e-mail is mapped, and the person has it already
            return searched
        verdict, _ = self._call(
            client,
            "PATCH",
            f"{base}{PERSONS_PATH}/{person_id}",
            f"update of person {person_id}",
            headers=headers,
            body=body,
            now=now,
            gone_is_retry=True,
        )
        return verdict

    def _call(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        what: str,
        *,
        headers: Mapping[str, str],
        now: datetime,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        gone_is_retry: bool = False,
    ) -> tuple[Verdict, dict[str, Any]]:
        """One call: its verdict and JSON on success; raises _Failed otherwise."""
        try:
            response = client.request(method, url, params=params, json=body, headers=headers)
        except httpx.TimeoutException:
            raise _Failed(
                Verdict(Outcome(ok=False, error=f"Pipedrive {what}: no answer in time"))
            ) from None
        except httpx.HTTPError as error:
            raise _Failed(
                Verdict(Outcome(ok=False, error=f"Pipedrive {what}: could not reach it: {error}"))
            ) from None
        verdict, data = self.judge(response, what=what, now=now, gone_is_retry=gone_is_retry)
        if not verdict.outcome.ok:
            raise _Failed(verdict)
        return verdict, data

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
            wait = _seconds(response, "retry-after")
            if wait is None:
                wait = _seconds(response, "x-ratelimit-reset")
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
            retry_after=_seconds(response, "retry-after"),
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


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(response: httpx.Response, header: str) -> float | None:
    value = response.headers.get(header)
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


CONNECTOR = PipedriveConnector()
