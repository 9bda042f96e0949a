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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.core.errors import DomainError, NotFound, Unauthorized
from partnerloop.core.groupcommit import GroupCommitter, Write
from partnerloop.core.ids import has_kind
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
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.web import metrics, problems
from partnerloop.web.api.common import ERRORS
from partnerloop.web.deps import RuntimeDep, wake_worker
from partnerloop.web.redirect import Receive, Scope, Send

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
    # The body as the inbox stores it, sealed as the request arrived: the batch's
    # writer (one thread for every webhook) then only verifies and inserts.
    sealed: str | None = None


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


def make_writer(runtime: Runtime) -> Write[Hook, HookAccepted | Answer]:
    """Verify and store a batch of webhooks in one transaction (see core/groupcommit.py).

    Verification runs here, not before queueing, so it always sees the
    connector's secrets as committed now (a rotation or deletion a moment ago
    counts). A refusal (401, 404) is that webhook's own outcome: nothing of it is
    stored and the others are not affected. The verified ones go into the inbox
    in one statement.
    """

    decrypt = connectors.Decrypted(runtime.cipher)

    def write(
        session: Session, hooks: Sequence[Hook]
    ) -> list[HookAccepted | Answer | BaseException]:
        now = utcnow()
        receivers = _receivers(session, decrypt, {hook.connector_id for hook in hooks})
        outcomes: list[HookAccepted | Answer | BaseException | None] = []
        new: list[tuple[int, sync.NewEvent]] = []
        for hook in hooks:
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
                        sealed=hook.sealed,
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


def make_committer(
    runtime: Runtime, *, on_traffic: Callable[[], None] | None = None
) -> GroupCommitter[Hook, HookAccepted | Answer]:
    """The app's one webhook committer (create_app makes it; both entry points share
    it). `on_traffic` is told of every commit (the in-process worker's pacer)."""

    def observe(size: int, seconds: float) -> None:
        metrics.WEBHOOK_BATCH_SIZE.observe(size)
        metrics.WEBHOOK_COMMIT_SECONDS.observe(seconds)
        if on_traffic is not None:
            on_traffic()

    return GroupCommitter(
        runtime.sessions,
        make_writer(runtime),
        max_batch=runtime.settings.click_batch_max,
        on_commit=observe,
    )


async def accept(
    committer: GroupCommitter[Hook, HookAccepted | Answer], hook: Hook
) -> HookAccepted | Answer:
    """Verify and store one webhook; returns once the batch holding it is committed
    (a 200 means stored). Raises the DomainError to answer with (401, 404)."""
    if not has_kind(hook.connector_id, "connector"):  # not even the shape of one
        raise NotFound(f"No connector {hook.connector_id[:64]}.", code="connector_not_found")
    try:
        answer = await committer.submit(hook)
    except Unauthorized:
        metrics.WEBHOOKS.labels("unauthorized").inc()
        raise
    metrics.WEBHOOKS.labels("answered" if isinstance(answer, Answer) else answer.status).inc()
    return answer


async def _handle(request: Request, runtime: RuntimeDep, connector_id: str) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BodyTooLarge(BODY_TOO_LARGE, code="body_too_large")
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
    answer = await accept(request.app.state.hook_committer, Hook(connector_id, webhook, public_url))
    if isinstance(answer, Answer):
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)
    wake_worker(request)
    return Response(answer.model_dump_json(), media_type="application/json")


PREFIX = "/hooks/"
BODY_TOO_LARGE = "The webhook body is larger than 5 MiB."


class BodyTooLarge(DomainError):
    status = 413
    title = "Payload too large"


class HookApp:
    """POST /hooks/{connector_id} as a bare ASGI handler in front of FastAPI, as
    /r/ has: order ingestion's hot path, where FastAPI's routing, dependency and
    middleware stack cost several times the verification and the insert (issue 6,
    benchmarks/RESULTS.md). Same answers as the documented route below: JSON on
    200, problem+json on errors."""

    def __init__(
        self,
        runtime: Runtime,
        committer: GroupCommitter[Hook, HookAccepted | Answer],
        wake: Callable[[], None],
    ) -> None:
        self._committer = committer
        self._wake = wake
        self._public_url = runtime.settings.public_url
        self._cipher = runtime.cipher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connector_id: str = scope["path"][len(PREFIX) :]
        try:
            body = await _read_body(receive)
            query: bytes = scope.get("query_string", b"")
            text_query = query.decode("latin-1")
            webhook = WebhookRequest(
                method="POST",
                # ASGI header names are lower case already; the last of a repeated
                # header wins, as in the route's dict of Starlette's headers.
                headers={
                    name.decode("latin-1"): value.decode("latin-1")
                    for name, value in scope["headers"]
                },
                query=dict(parse_qsl(text_query, keep_blank_values=True)),
                body=body,
            )
            public_url = connectors.webhook_url(self._public_url, connector_id)
            if text_query:
                public_url += f"?{text_query}"
            sealed = sync.seal_payload(self._cipher, body)
            answer = await accept(self._committer, Hook(connector_id, webhook, public_url, sealed))
        except ClientGone:
            return
        except DomainError as error:
            response: Response = problems.problem(
                error.status, code=error.code, title=error.title, detail=error.detail,
                field=error.field,
            )  # fmt: skip
            await response(scope, receive, send)
            return
        except Exception as error:
            log.error("unhandled %s on POST /hooks/", type(error).__name__, exc_info=error)
            await problems.internal_error()(scope, receive, send)
            return
        if isinstance(answer, Answer):
            body_out = answer.body.encode()
            content_type = answer.content_type
            status = answer.status
        else:
            self._wake()
            body_out = answer.model_dump_json().encode()
            content_type, status = "application/json", 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode("latin-1")),
                    (b"content-length", str(len(body_out)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body_out})


async def _read_body(receive: Receive) -> bytes:
    """The request body, refused (413) as soon as it passes MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(BODY_TOO_LARGE, code="body_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


class ClientGone(Exception):
    """The client hung up before its body arrived: nothing to store or answer."""


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
    for an unknown connector, 413 for a body over 5 MiB. Point the shop at the
    `webhook_url` that `POST /api/v1/connectors` returned. (Served by the
    hand-written `HookApp` in front of the framework; the answers are the same.)
    """
    return await _handle(request, runtime, connector_id)


@router.get("/hooks/{connector_id}", operation_id="webhook_get", responses=ERRORS)
async def webhook_challenge(request: Request, runtime: RuntimeDep, connector_id: str) -> Response:
    """Registration handshakes that some vendors send as GET (Adobe I/O Events'
    `challenge`): answered as the vendor requires, nothing stored."""
    return await _handle(request, runtime, connector_id)
