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

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput, NotFound, Unauthorized
from partnerloop.integrations import connectors, crm_to_shop
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import CRM_WEBHOOKS, SHOPS
from partnerloop.integrations.shop import Answer, BadSignature, WebhookRequest
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

    def store() -> HookAccepted | Answer:
        with transaction(runtime.sessions) as session:
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
            now = utcnow()
            secrets = connectors.secrets_of(runtime.cipher, connector)
            try:
                if shop is not None:
                    config = connectors.config_of(session, runtime.cipher, connector)
                    verified = shop.verify(webhook, secrets=secrets, config=config, now=now)
                else:
                    assert crm is not None
                    verified = crm.verify(webhook, secrets=secrets, url=public_url, now=now)
            except BadSignature as error:
                raise Unauthorized(str(error), code="invalid_signature") from None
            if isinstance(verified, Answer):
                return verified
            received = sync.receive(
                session,
                runtime.cipher,
                kind=connectors.INBOUND_KIND if shop is not None else crm_to_shop.INBOUND_KIND,
                source=connectors.source_of(connector.id),
                external_id=verified.event_id[:512],
                topic=verified.topic,
                payload=body,
                program_id=connector.program_id,
                now=now,
            )
            return HookAccepted(
                status="accepted" if received.created else "duplicate",
                event_id=received.event.id,
            )

    try:
        answer = await anyio.to_thread.run_sync(store)
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
