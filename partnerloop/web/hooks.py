"""POST /hooks/{connector_id}: where shops (and CRMs: HubSpot, Pipedrive) deliver
their webhooks.

The connector verifies the request on its raw bytes; a bad signature is a 401
and nothing is stored. A verified request is stored in the inbox (idempotent
on the vendor's event id) and answered 200 at once; the worker normalises and
applies it. A payload we cannot use is still stored and answered 200, then
quarantined as `rejected` with the reason: the shop must not retry (or disable
the webhook) over something only a fix on our side can resolve.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.core.errors import DomainError, InvalidInput, NotFound, Unauthorized
from partnerloop.core.groupcommit import GroupCommitter, Write
from partnerloop.integrations import connectors, crm_to_shop
from partnerloop.integrations.crm_to_shop import CrmWebhooks
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import CRM_WEBHOOKS, SHOPS
from partnerloop.integrations.shop import (
    Answer,
    BadSignature,
    ConnectorConfig,
    Delivery,
    ShopConnector,
    WebhookRequest,
)
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.web import metrics
from partnerloop.web.api.common import ERRORS
from partnerloop.web.deps import RuntimeDep, wake_worker

log = logging.getLogger("partnerloop.hooks")
router = APIRouter(tags=["webhooks"])

MAX_BODY = 5 * 1024 * 1024  # Shopify orders with hundreds of lines stay far below this


class HookAccepted(BaseModel):
    status: str = Field(description="accepted, or duplicate for an event already received.")
    event_id: str


@dataclass(frozen=True)
class Hook:
    connector_id: str
    request: WebhookRequest
    public_url: str  # as the sender called it (HubSpot signs it)


@dataclass(frozen=True)
class _Receiver:
    """A connector as a batch needs it: looked up and decrypted once per batch."""

    connector: Connector
    shop: ShopConnector | None
    crm: CrmWebhooks | None
    secrets: list[str]
    config: ConnectorConfig | None


def _receiver(session: Session, runtime: Runtime, connector_id: str) -> _Receiver:
    connector = session.get(Connector, connector_id)
    if connector is None:
        raise NotFound(f"No connector {connector_id}.", code="connector_not_found")
    shop = SHOPS.get(connector.kind)
    crm = CRM_WEBHOOKS.get(connector.kind)
    if shop is None and crm is None:
        raise NotFound(
            f"Connector {connector_id} is of kind {connector.kind!r}, which this "
            "version does not receive webhooks for.",
            code="connector_not_found",
        )
    return _Receiver(
        connector=connector,
        shop=shop,
        crm=crm,
        secrets=connectors.secrets_of(runtime.cipher, connector),
        config=connectors.config_of(session, runtime.cipher, connector) if shop else None,
    )


def _verify(hook: Hook, receiver: _Receiver, now: datetime) -> Delivery | Answer:
    try:
        if receiver.shop is not None:
            assert receiver.config is not None
            return receiver.shop.verify(
                hook.request, secrets=receiver.secrets, config=receiver.config, now=now
            )
        assert receiver.crm is not None
        return receiver.crm.verify(
            hook.request, secrets=receiver.secrets, url=hook.public_url, now=now
        )
    except BadSignature as error:
        raise Unauthorized(str(error), code="invalid_signature") from None


def make_writer(runtime: Runtime) -> Write[Hook, HookAccepted | Answer]:
    """Verify and store a batch of webhooks in one transaction (see core/groupcommit.py).

    Verification runs here, not before queueing, so it always sees the
    connector's secrets as committed now (a rotation or deletion a moment ago
    counts). A refusal (401, 404) is that webhook's own outcome: nothing of it is
    stored and the others are not affected. The verified ones go into the inbox
    in one statement.
    """

    def write(
        session: Session, hooks: Sequence[Hook]
    ) -> list[HookAccepted | Answer | BaseException]:
        now = utcnow()
        receivers: dict[str, _Receiver | DomainError] = {}
        outcomes: list[HookAccepted | Answer | BaseException | None] = []
        new: list[tuple[int, sync.NewEvent]] = []
        for hook in hooks:
            receiver = receivers.get(hook.connector_id)
            if receiver is None:
                try:
                    receiver = _receiver(session, runtime, hook.connector_id)
                except DomainError as error:
                    receiver = error
                receivers[hook.connector_id] = receiver
            if isinstance(receiver, DomainError):
                outcomes.append(receiver)
                continue
            try:
                verified = _verify(hook, receiver, now)
            except DomainError as error:
                outcomes.append(error)
                continue
            if isinstance(verified, Answer):
                outcomes.append(verified)
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
                    ),
                )
            )
            outcomes.append(None)
        stored = sync.store_events(session, runtime.cipher, [event for _, event in new], now=now)
        for (position, _), (event_id, created) in zip(new, stored, strict=True):
            outcomes[position] = HookAccepted(
                status="accepted" if created else "duplicate", event_id=event_id
            )
        return [outcome for outcome in outcomes if outcome is not None]

    return write


def _committer(request: Request, runtime: Runtime) -> GroupCommitter[Hook, HookAccepted | Answer]:
    # One per app, made on first use (the app's event loop is running by then).
    state = request.app.state
    committer: GroupCommitter[Hook, HookAccepted | Answer] | None = getattr(
        state, "hook_committer", None
    )
    if committer is None:
        committer = GroupCommitter(
            runtime.sessions, make_writer(runtime), max_batch=runtime.settings.click_batch_max
        )
        state.hook_committer = committer
    return committer


async def _handle(request: Request, runtime: RuntimeDep, connector_id: str) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInput("The webhook body is larger than 5 MiB.", code="body_too_large")
    webhook = WebhookRequest(
        method=request.method,
        headers={name.lower(): value for name, value in request.headers.items()},
        query=dict(request.query_params),
        body=body,
    )

    # The URL as the sender called it (HubSpot signs it): our public address, not
    # the one a proxy in front of us forwarded to.
    public_url = connectors.webhook_url(runtime.settings.public_url, connector_id)
    if request.url.query:
        public_url += f"?{request.url.query}"

    # Answered only once the batch holding this webhook is committed: a 200 means stored.
    try:
        answer = await _committer(request, runtime).submit(Hook(connector_id, webhook, public_url))
    except Unauthorized:
        metrics.WEBHOOKS.labels("unauthorized").inc()
        raise
    if isinstance(answer, Answer):
        metrics.WEBHOOKS.labels("answered").inc()
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)
    metrics.WEBHOOKS.labels(answer.status).inc()
    wake_worker(request)
    return Response(answer.model_dump_json(), media_type="application/json")


@router.post(
    "/hooks/{connector_id}",
    operation_id="webhook_post",
    response_model=HookAccepted,
    responses=ERRORS,
)
async def receive_webhook(request: Request, runtime: RuntimeDep, connector_id: str) -> Response:
    """A shop's or CRM's webhook, with the vendor's own headers and raw body.

    200 once the event is stored (a redelivery answers `duplicate`), 401 when
    the signature does not match the connector's secret (nothing stored), 404
    for an unknown connector. Point the shop at the `webhook_url` that
    `POST /api/v1/connectors` returned.
    """
    return await _handle(request, runtime, connector_id)


@router.get("/hooks/{connector_id}", operation_id="webhook_get", responses=ERRORS)
async def webhook_challenge(request: Request, runtime: RuntimeDep, connector_id: str) -> Response:
    """Registration handshakes that some vendors send as GET (Adobe I/O Events'
    `challenge`): answered as the vendor requires, nothing stored."""
    return await _handle(request, runtime, connector_id)
