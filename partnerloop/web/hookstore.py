"""Webhooks in the store (web/store.py): verified and written to the inbox
in batches, one transaction per batch, in the store's process.

The HTTP side (web/hooks.py) reads the request and sends it here as a tuple
(`encode`); each webhook comes back as an outcome tuple (`Outcome`): stored (new
or a duplicate), answered without storing (a vendor's ping or challenge), or
refused (401, 404). Verification runs here, not before queueing, so it always
sees the connector's secrets as committed now: a rotation or deletion a moment
ago counts. A refusal is that webhook's own outcome: nothing of it is stored and
the others in the batch are not affected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import make_sessionmaker
from partnerloop.core.errors import DomainError, NotFound, Unauthorized
from partnerloop.core.groupcommit import commit_together
from partnerloop.integrations import connectors, crm_to_shop
from partnerloop.integrations.crm_to_shop import CrmWebhooks
from partnerloop.integrations.registry import CRM_WEBHOOKS, SHOPS
from partnerloop.integrations.shop import (
    Answer,
    BadSignature,
    Delivery,
    ShopConnector,
    WebhookRequest,
)
from partnerloop.sync import service as sync

log = logging.getLogger("partnerloop.hooks")

# Outcome tuples, as they travel back (marshal: plain values only).
STORED = "stored"  # (STORED, event id, created: bool)
ANSWERED = "answered"  # (ANSWERED, status, body, content type)
REFUSED = "refused"  # (REFUSED, status, title, code, detail)
FAILED = "failed"  # (FAILED, exception type name): not stored (logged here); a 503
Outcome = tuple[Any, ...]


@dataclass(frozen=True)
class Hook:
    connector_id: str
    request: WebhookRequest
    public_url: str  # as the sender called it (HubSpot signs it)


def encode(hook: Hook) -> tuple[Any, ...]:
    request = hook.request
    return (
        hook.connector_id,
        request.method,
        dict(request.headers),
        dict(request.query),
        request.body,
        hook.public_url,
    )


def decode(values: Sequence[Any]) -> Hook:
    connector_id, method, headers, query, body, public_url = values
    return Hook(connector_id, WebhookRequest(method, headers, query, body), public_url)


@dataclass(frozen=True)
class _Receiver:
    """A connector as a batch needs it: looked up and decrypted once per batch."""

    connector: connectors.Receiving
    shop: ShopConnector | None
    crm: CrmWebhooks | None


def _receivers(
    session: Session, decrypt: connectors.Decrypted, connector_ids: set[str]
) -> dict[str, _Receiver | DomainError]:
    found = connectors.receiving(session, decrypt, sorted(connector_ids))
    receivers: dict[str, _Receiver | DomainError] = {}
    for connector_id in connector_ids:
        connector = found.get(connector_id)
        if connector is None:
            receivers[connector_id] = NotFound(
                f"No connector {connector_id}.", code="connector_not_found"
            )
            continue
        shop = SHOPS.get(connector.kind)
        crm = CRM_WEBHOOKS.get(connector.kind)
        if shop is None and crm is None:
            receivers[connector_id] = NotFound(
                f"Connector {connector_id} is of kind {connector.kind!r}, which this "
                "version does not receive webhooks for.",
                code="connector_not_found",
            )
            continue
        receivers[connector_id] = _Receiver(connector=connector, shop=shop, crm=crm)
    return receivers


def _verify(hook: Hook, receiver: _Receiver, now: datetime) -> Delivery | Answer:
    try:
        connector = receiver.connector
        if receiver.shop is not None:
            return receiver.shop.verify(
                hook.request, secrets=connector.secrets, config=connector.config, now=now
            )
        assert receiver.crm is not None
        return receiver.crm.verify(
            hook.request, secrets=connector.secrets, url=hook.public_url, now=now
        )
    except BadSignature as error:
        raise Unauthorized(str(error), code="invalid_signature") from None


class HookStore:
    """Verifies and stores batches of webhooks (one per store: it keeps the
    connectors' decrypted secrets by ciphertext)."""

    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self._sessions = make_sessionmaker(engine)
        self._cipher = cipher
        self._decrypt = connectors.Decrypted(cipher)

    def commit(self, hooks: Sequence[Hook]) -> list[Outcome]:
        """Store the batch in one transaction (each alone if that fails); an
        outcome per webhook, in order."""
        # Sealed (deflated, encrypted) before the transaction: on SQLite the write
        # lock is held from its first statement to its commit.
        sealed = [(hook, sync.seal_payload(self._cipher, hook.request.body)) for hook in hooks]
        outcomes = commit_together(self._sessions, self._write, sealed)
        return [_outcome(outcome) for outcome in outcomes]

    def _write(
        self, session: Session, batch: Sequence[tuple[Hook, str]]
    ) -> list[Outcome | BaseException]:
        now = utcnow()
        hooks = [hook for hook, _ in batch]
        receivers = _receivers(session, self._decrypt, {hook.connector_id for hook in hooks})
        outcomes: list[Outcome | BaseException | None] = []
        new: list[tuple[int, sync.NewEvent]] = []
        for hook, sealed in batch:
            receiver = receivers[hook.connector_id]
            if isinstance(receiver, DomainError):
                outcomes.append(receiver)
                continue
            try:
                verified = _verify(hook, receiver, now)
            except DomainError as error:
                outcomes.append(error)
                continue
            if isinstance(verified, Answer):
                outcomes.append((ANSWERED, verified.status, verified.body, verified.content_type))
                continue
            new.append(
                (
                    len(outcomes),
                    sync.NewEvent(
                        kind=connectors.INBOUND_KIND
                        if receiver.shop is not None
                        else crm_to_shop.INBOUND_KIND,
                        source=connectors.source_of(receiver.connector.id),
                        external_id=verified.event_id[:512],
                        topic=verified.topic,
                        payload=hook.request.body,
                        program_id=receiver.connector.program_id,
                        sealed=sealed,
                    ),
                )
            )
            outcomes.append(None)
        stored = sync.store_events(session, self._cipher, [event for _, event in new], now=now)
        for (position, _), (event_id, created) in zip(new, stored, strict=True):
            outcomes[position] = (STORED, event_id, created)
        return [outcome for outcome in outcomes if outcome is not None]


def _outcome(result: Outcome | BaseException) -> Outcome:
    if isinstance(result, DomainError):
        return (REFUSED, result.status, result.title, result.code, result.detail)
    if isinstance(result, BaseException):
        log.error("a webhook could not be stored", exc_info=result)
        return (FAILED, type(result).__name__)
    return result
