"""Outgoing webhooks for middleware (Zapier, Make, n8n, any endpoint), signed the
Standard Webhooks way (https://www.standardwebhooks.com):

    webhook-id:        the event's id (the same on every retry: receivers dedupe on it)
    webhook-timestamp: unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

keyed with the endpoint's secret `whsec_<base64 key>`. The body is
{"type", "timestamp", "program_id", "data"}.

Delivery is at least once: every partnerloop event is an outbox row, fanned out
to each subscribed endpoint, retried with backoff and Retry-After until the
receiver answers 2xx. An endpoint that fails too many times in a row is
disabled (its messages are dead-lettered, replayable once it is enabled).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets as random_secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from partnerloop.core.errors import InvalidInput
from partnerloop.core.http import retry_after_seconds
from partnerloop.integrations.shop import hmac_sha256
from partnerloop.sync.worker import Outcome

KIND = "webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
# The events an endpoint can subscribe to (settings.events); none given = all.
EVENT_TYPES = (
    "conversion.created",
    "conversion.updated",
    "commission.created",
    "commission.adjusted",
    "commission.reversed",
    "commission.approved",
    "commission.declined",
    "commission.paid",
    "affiliate.approved",
    "affiliate.rejected",
    "affiliate.suspended",
    "connector.disabled",
)
MAX_RESPONSE_CHARS = 1000
# 408 and 429 and every 5xx mean "later"; 410 means "this endpoint is gone".
GONE = 410


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "A webhook secret is whsec_ followed by base64 (24 to 64 bytes); leave it out "
            "and partnerloop makes one.",
            code="invalid_secret",
            field="secret",
        ) from None
    if not 24 <= len(key) <= 64:
        raise InvalidInput(
            "A webhook secret's key must be 24 to 64 bytes.", code="invalid_secret", field="secret"
        )
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac_sha256(signing_key(secret), signed)).decode()


def body_of(payload: Mapping[str, Any]) -> bytes:
    """The request body for a fanned-out event payload."""
    return json.dumps(
        {
            "type": payload["type"],
            "timestamp": payload["occurred_at"],
            "program_id": payload["program_id"],
            "data": payload["data"],
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class WebhookConnector:
    kind = KIND
    settings_fields: Mapping[str, bool] = {"url": True}
    list_settings: Sequence[str] = ("events",)
    credential_fields: Sequence[str] = ()

    def check_secret(self, secret: str | None) -> str:
        """The secret to store: the one given (checked), or a new one."""
        if not secret:
            return new_secret()
        signing_key(secret)
        return secret

    def check_list(self, name: str, values: list[str]) -> list[str]:
        unknown = [value for value in values if value not in EVENT_TYPES]
        if unknown:
            raise InvalidInput(
                f"Unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}.",
                code="unknown_event_type",
                field=f"settings.{name}",
            )
        return sorted(set(values))

    def wants(self, settings: Mapping[str, Any], topic: str) -> bool:
        events = settings.get("events")
        return topic in EVENT_TYPES and (not events or topic in events)

    def deliver(
        self,
        client: httpx.Client,
        *,
        url: str,
        secrets: Sequence[str],
        payload: Mapping[str, Any],
        now: datetime,
    ) -> Outcome:
        """POST the event. During a secret rotation it is signed with both secrets
        (space-separated signatures), so receivers on either one accept it."""
        body = body_of(payload)
        message_id = str(payload["id"])
        timestamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "partnerloop-webhooks",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(
                sign(secret, message_id, timestamp, body) for secret in secrets
            ),
        }
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome(ok=False, error="the endpoint did not answer in time")
        except httpx.HTTPError as error:
            return Outcome(ok=False, error=f"could not reach the endpoint: {error}")
        excerpt = response.text[:MAX_RESPONSE_CHARS] if response.content else None
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(ok=True, status_code=status, response=excerpt)
        return Outcome(
            ok=False,
            error=f"the endpoint answered {status}",
            retry_after=retry_after_seconds(response),
            permanent=status == GONE,
            status_code=status,
            response=excerpt,
        )


CONNECTOR = WebhookConnector()
