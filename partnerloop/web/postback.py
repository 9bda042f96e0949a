"""GET|POST /postback: server-to-server conversions and refunds from apps and
networks, authenticated by the program's postback token.

Validated here, stored in the inbox, answered 200; the worker does the rest.
A network that retries gets `duplicate` and nothing is counted twice.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput, Unauthorized
from partnerloop.integrations.postback import handler as postback
from partnerloop.programs import service as programs
from partnerloop.sync import service as sync
from partnerloop.web import metrics
from partnerloop.web.api.common import ERRORS
from partnerloop.web.deps import RuntimeDep, wake_worker

router = APIRouter(tags=["postback"])

MAX_BODY = 64 * 1024


class PostbackAccepted(BaseModel):
    status: str = Field(description="accepted, or duplicate for a postback already received.")
    event_id: str


async def _params(request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method == "POST":
        body = await request.body()
        if len(body) > MAX_BODY:
            raise InvalidInput("The postback body is larger than 64 KiB.", code="body_too_large")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type == "application/json" and body:
            try:
                data: Any = json.loads(body)
            except ValueError:
                raise InvalidInput(
                    "The request body is not valid JSON.", code="malformed_json"
                ) from None
            if not isinstance(data, dict):
                raise InvalidInput("The JSON body must be an object.", code="invalid_body")
            params.update(
                {
                    k: str(v)
                    for k, v in data.items()
                    if v is not None and not isinstance(v, dict | list)
                }
            )
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


@router.get(
    "/postback", operation_id="postback_get", response_model=PostbackAccepted, responses=ERRORS
)
@router.post(
    "/postback", operation_id="postback_post", response_model=PostbackAccepted, responses=ERRORS
)
async def receive_postback(
    request: Request,
    runtime: RuntimeDep,
    x_postback_token: Annotated[
        str | None, Header(description="The program's postback token.")
    ] = None,
) -> PostbackAccepted:
    """Report a conversion (default) or a refund (`event=refund`, needs `refund_id`).

    Parameters, in the query string or a form/JSON body: `token` (or header
    X-Postback-Token), `order_id`, `amount`, `currency` (default: the
    program's), `click_id` (or `plclid`), `coupon`, `customer_id`,
    `customer_email`, `event`, `refund_id`.
    """
    params = await _params(request)
    query_token = params.pop("token", None)  # never part of the stored postback
    token = x_postback_token or query_token
    if not token:
        metrics.POSTBACKS.labels("unauthorized").inc()
        raise Unauthorized(
            "Give the program's postback token (?token=...).", code="missing_postback_token"
        )

    def store() -> PostbackAccepted:
        with transaction(runtime.sessions) as session:
            program = programs.find_by_postback_token(session, token)
            if program is None:
                raise Unauthorized("Unknown postback token.", code="invalid_postback_token")
            parsed = postback.parse(params, program_currency=program.currency)
            received = sync.receive(
                session,
                runtime.cipher,
                kind=postback.KIND,
                source=f"{postback.KIND}:{program.id}",
                external_id=parsed.external_id,
                topic=parsed.event,
                payload=parsed.to_json(),
                program_id=program.id,
                now=utcnow(),
            )
            return PostbackAccepted(
                status="accepted" if received.created else "duplicate", event_id=received.event.id
            )

    try:
        answer = await anyio.to_thread.run_sync(store)
    except Unauthorized:
        metrics.POSTBACKS.labels("unauthorized").inc()
        raise
    except InvalidInput:
        metrics.POSTBACKS.labels("invalid").inc()
        raise
    metrics.POSTBACKS.labels(answer.status).inc()
    wake_worker(request)
    return answer
