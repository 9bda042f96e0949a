"""POST /hooks/{connector_id}: where shops (and CRMs: HubSpot, Pipedrive) deliver
their webhooks.

The connector verifies the request on its raw bytes (in the store process,
web/hookstore.py; this module reads the request and answers); a bad signature
is a 401 and nothing is stored. A verified request is stored in the inbox (idempotent
on the vendor's event id) and answered 200 at once; the worker normalises and
applies it. A payload we cannot use is still stored and answered 200, then
quarantined as `rejected` with the reason: the shop must not retry (or disable
the webhook) over something only a fix on our side can resolve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from partnerloop.core.errors import DomainError, NotFound, Unavailable
from partnerloop.core.ids import has_kind
from partnerloop.integrations import connectors
from partnerloop.integrations.shop import Answer, WebhookRequest
from partnerloop.runtime import Runtime
from partnerloop.web import hookstore, metrics, problems
from partnerloop.web.api.common import ERRORS, Problem
from partnerloop.web.deps import RuntimeDep, wake_worker
from partnerloop.web.hookstore import Hook
from partnerloop.web.redirect import Receive, Scope, Send
from partnerloop.web.store import link_in_thread, link_to
from partnerloop.web.storelink import WEBHOOKS, OnAnswer, StoreLink

log = logging.getLogger("partnerloop.hooks")
router = APIRouter(tags=["webhooks"])

MAX_BODY = 5 * 1024 * 1024  # Shopify orders with hundreds of lines stay far below this


class HookAccepted(BaseModel):
    status: str = Field(description="accepted, or duplicate for an event already received.")
    event_id: str


class HookWriter:
    """Sends webhooks to the store (web/store.py, which verifies and stores
    them: web/hookstore.py) and turns its outcomes into answers."""

    def __init__(self, link: StoreLink) -> None:
        self._link = link

    @classmethod
    def to_socket(cls, path: Path, on_traffic: Callable[[], None] | None = None) -> HookWriter:
        """Send to the store listening at `path` (serve's own process)."""
        return cls(link_to(path, kind=WEBHOOKS, on_answer=_observer(on_traffic)))

    @classmethod
    def in_thread(
        cls, runtime: Runtime, on_traffic: Callable[[], None] | None = None
    ) -> HookWriter:
        """Run the store in a thread of this process (tests, embedded apps)."""
        link = link_in_thread(
            runtime.engine,
            runtime.cipher,
            batch_max=runtime.settings.click_batch_max,
            kind=WEBHOOKS,
            on_answer=_observer(on_traffic),
        )
        return cls(link)

    async def submit(self, hook: Hook) -> HookAccepted | Answer:
        """Verify and store one webhook; returns once the batch holding it is
        committed. Raises the DomainError to answer with (401, 404, 503)."""
        committed, outcome = await self._link.submit(
            hookstore.encode(hook), size=len(hook.request.body)
        )
        # Not stored (the store unreachable, or its database failing even for this
        # webhook alone): the shop is to send it again.
        if not committed or outcome[0] == hookstore.FAILED:
            raise Unavailable(
                "The webhook could not be stored just now; send it again.",
                code="store_unavailable",
            )
        kind = outcome[0]
        if kind == hookstore.STORED:
            _, event_id, created = outcome
            return HookAccepted(status="accepted" if created else "duplicate", event_id=event_id)
        if kind == hookstore.ANSWERED:
            _, status, body, content_type = outcome
            return Answer(status=status, body=body, content_type=content_type)
        if kind == hookstore.REFUSED:
            _, status, title, code, detail = outcome
            refusal = DomainError(detail, code=code)
            refusal.status, refusal.title = status, title
            raise refusal
        raise RuntimeError(f"an outcome this version does not know: {kind!r}")

    async def close(self) -> None:
        """Wait for the webhooks already sent to be answered (on shutdown)."""
        await self._link.close()


def _observer(on_traffic: Callable[[], None] | None) -> OnAnswer:
    def observe(size: int, committed: bool, seconds: float) -> None:
        metrics.WEBHOOK_BATCH_SIZE.observe(size)
        if committed:
            metrics.WEBHOOK_COMMIT_SECONDS.observe(seconds)
        if on_traffic is not None:
            on_traffic()

    return observe


async def accept(writer: HookWriter, hook: Hook) -> HookAccepted | Answer:
    """Verify and store one webhook; returns once the batch holding it is committed
    (a 200 means stored). Raises the DomainError to answer with (401, 404, 503)."""
    if not has_kind(hook.connector_id, "connector"):  # not even the shape of one
        raise NotFound(f"No connector {hook.connector_id[:64]}.", code="connector_not_found")
    try:
        answer = await writer.submit(hook)
    except DomainError as error:
        if error.status == 401:
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
    answer = await accept(request.app.state.hook_writer, Hook(connector_id, webhook, public_url))
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

    def __init__(self, runtime: Runtime, writer: HookWriter, wake: Callable[[], None]) -> None:
        self._writer = writer
        self._wake = wake
        self._public_url = runtime.settings.public_url

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
            answer = await accept(self._writer, Hook(connector_id, webhook, public_url))
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
    responses={
        **ERRORS,
        413: {"model": Problem, "description": "The body is larger than 5 MiB"},
        503: {"model": Problem, "description": "Not stored just now (send it again)"},
    },
)
async def receive_webhook(request: Request, runtime: RuntimeDep, connector_id: str) -> Response:
    """A shop's or CRM's webhook, with the vendor's own headers and raw body.

    200 once the event is stored (a redelivery answers `duplicate`), 401 when
    the signature does not match the connector's secret (nothing stored), 404
    for an unknown connector, 413 for a body over 5 MiB, 503 when it could not be
    stored just now (the store restarting: nothing stored, send it again; shops
    do). Point the shop at the
    `webhook_url` that `POST /api/v1/connectors` returned. (Served by the
    hand-written `HookApp` in front of the framework; the answers are the same.)
    """
    return await _handle(request, runtime, connector_id)


@router.get("/hooks/{connector_id}", operation_id="webhook_get", responses=ERRORS)
async def webhook_challenge(request: Request, runtime: RuntimeDep, connector_id: str) -> Response:
    """Registration handshakes that some vendors send as GET (Adobe I/O Events'
    `challenge`): answered as the vendor requires, nothing stored."""
    return await _handle(request, runtime, connector_id)
