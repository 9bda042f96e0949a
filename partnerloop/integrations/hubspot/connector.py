"""HubSpot (CRM v3): customers become contacts, upserted by e-mail.

`POST /crm/v3/objects/contacts/batch/upsert` with `idProperty: email` creates
the contact or updates it, so a retried delivery does the same thing twice
and no duplicate contact appears. Authentication: a private app's access token
(`Authorization: Bearer`).

Answers and what they mean (../shared/fixtures/NOTES.md section 5):
- 200/201: accepted. 207 Multi-Status: some inputs failed; the errors say why.
- 429 with policyName SECONDLY (or any other interval): wait (Retry-After, else
  one second). 429 DAILY: the account's daily quota is used up until midnight in
  the account's time zone: the whole connector pauses until then.
- 401: the token is wrong or was revoked: retried (the merchant fixes it), and
  the attempt log says so. 400/403/404/409: our payload or a property is wrong
  (e.g. a custom property that does not exist): dead-lettered with HubSpot's
  message, replayable after the fix. 5xx and timeouts: retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from partnerloop.core.clock import parse_datetime
from partnerloop.core.errors import InvalidInput
from partnerloop.integrations.crm import CrmRecord, Verdict
from partnerloop.sync.worker import Outcome

KIND = "hubspot"
DEFAULT_API_BASE = "https://api.hubapi.com"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
READ_PATH = "/crm/v3/objects/contacts/batch/read"
MAX_RESPONSE_CHARS = 1000
PERMANENT_STATUSES = (400, 403, 404, 409, 422)


def next_midnight(now: datetime, timezone: str) -> datetime:
    local = now.astimezone(ZoneInfo(timezone))
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(ZoneInfo("UTC"))


def _text(value: Any) -> str:
    # HubSpot stores every property as text (numbers, dates in ms, booleans "true").
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class HubSpotConnector:
    kind = KIND
    key_property = "email"
    # HubSpot's published burst limit for private apps: 100 requests per 10 seconds.
    rate_limit = (10.0, 100)
    settings_fields: Mapping[str, bool] = {"timezone": False}
    credential_fields: Sequence[str] = ("access_token",)

    def as_stored(self, value: Any) -> Any:
        """How HubSpot holds a value we send (as text): conflicts compare like with like."""
        return None if value is None else _text(value)

    def check_secret(self, secret: str | None) -> str:
        """The app's client secret, for HubSpot's signed webhooks (optional)."""
        return secret or ""

    def validate(self, settings: Mapping[str, Any]) -> None:
        name = str(settings.get("timezone") or "UTC")
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"Unknown time zone {name!r}; give the HubSpot account's, e.g. Europe/Amsterdam.",
                code="invalid_setting",
                field="settings.timezone",
            ) from None

    def upsert_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        contacts: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> Verdict:
        """Upsert contacts (property dicts that include `email`) in one batch call."""
        token = credentials.get("access_token")
        if not token:
            return Verdict(
                Outcome(ok=False, error="no HubSpot access token (credentials.access_token)")
            )
        base = str(settings.get("api_base_url") or DEFAULT_API_BASE).rstrip("/")
        body = {
            "inputs": [
                {
                    "id": str(contact["email"]),
                    "idProperty": "email",
                    "properties": {k: _text(v) for k, v in contact.items() if v is not None},
                }
                for contact in contacts
            ]
        }
        try:
            response = client.post(
                base + UPSERT_PATH,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.TimeoutException:
            return Verdict(Outcome(ok=False, error="HubSpot did not answer in time"))
        except httpx.HTTPError as error:
            return Verdict(Outcome(ok=False, error=f"could not reach HubSpot: {error}"))
        verdict = self.judge(response, settings=settings, now=now)
        results = _json(response).get("results") or []
        if verdict.outcome.ok and not verdict.remote_ids and len(contacts) == len(results) == 1:
            # One contact in, one result out: that is its id, even when HubSpot does
            # not echo the e-mail property back.
            key = str(contacts[0]["email"]).lower()
            return Verdict(verdict.outcome, remote_ids={key: str(results[0].get("id"))})
        return verdict

    def read_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        keys: Sequence[str],
        properties: Sequence[str],
        now: datetime,
    ) -> dict[str, CrmRecord] | Verdict:
        """The CRM's current values of these contacts (by e-mail), for conflict
        policies. A contact HubSpot does not have is simply absent. HubSpot gives
        one updatedAt per contact: it stands for every property's time."""
        token = credentials.get("access_token")
        if not token:
            return Verdict(
                Outcome(ok=False, error="no HubSpot access token (credentials.access_token)")
            )
        base = str(settings.get("api_base_url") or DEFAULT_API_BASE).rstrip("/")
        body = {
            "idProperty": "email",
            "inputs": [{"id": key} for key in keys],
            "properties": sorted(set(properties) | {"email"}),
        }
        try:
            response = client.post(
                base + READ_PATH, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as error:
            return Verdict(Outcome(ok=False, error=f"could not read from HubSpot: {error}"))
        if response.status_code not in (200, 207):
            return self.judge(response, settings=settings, now=now)
        records: dict[str, CrmRecord] = {}
        for result in _json(response).get("results") or []:
            values = dict(result.get("properties") or {})
            email = str(values.get("email") or "").lower()
            if email:
                records[email] = CrmRecord(
                    values=values, updated_at=_parse_time(result.get("updatedAt"))
                )
        return records

    def judge(
        self, response: httpx.Response, *, settings: Mapping[str, Any], now: datetime
    ) -> Verdict:
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
        if status == 207:
            errors = data.get("errors") or []
            first = errors[0].get("message") if errors and isinstance(errors[0], dict) else None
            return Verdict(
                Outcome(
                    ok=False,
                    error=f"HubSpot refused some contacts: {first or message}",
                    permanent=True,
                    status_code=status,
                    response=excerpt,
                )
            )
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
                    retry_after=_retry_after(response) or 1.0,
                    status_code=status,
                    response=excerpt,
                )
            )
        return Verdict(
            Outcome(
                ok=False,
                error=f"HubSpot answered {status}: {message}",
                permanent=status in PERMANENT_STATUSES,
                retry_after=_retry_after(response),
                status_code=status,
                response=excerpt,
            )
        )


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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


CONNECTOR = HubSpotConnector()
