"""What routes get from the app: the runtime, the caller, pagination."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from partnerloop.access import service as access
from partnerloop.access.service import Principal
from partnerloop.core.errors import InvalidInput, Unauthorized
from partnerloop.runtime import Runtime
from partnerloop.sync.worker import Worker


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def wake_worker(request: Request) -> None:
    """Tell an in-process worker that new work was committed (saves a poll interval)."""
    worker: Worker | None = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()


def get_principal(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "Missing API key. Send 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    with runtime.sessions() as session:
        return access.authenticate(session, presented=token.strip())


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

MAX_PAGE = 200
_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_ID_RE = re.compile(r"^[a-z]{3}_[0-9A-Z]{26}$")


@dataclass(frozen=True)
class Page:
    limit: int
    after: str | None

    def render(self, items: Sequence[Any], id_of: Any = lambda item: item.id) -> dict[str, Any]:
        """Cursor pagination: the cursor is opaque to clients (today: the last id)."""
        next_cursor = None
        if len(items) == self.limit and items:
            next_cursor = base64.urlsafe_b64encode(id_of(items[-1]).encode()).decode().rstrip("=")
        return {"next_cursor": next_cursor}


def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page (1-200).")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor from the previous page.")] = None,
) -> Page:
    after = None
    if cursor:
        try:
            after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            after = None
        if after is None or not _CURSOR_RE.match(cursor) or not _ID_RE.match(after):
            raise InvalidInput(
                "cursor is not one this API gave out.", code="invalid_cursor", field="cursor"
            )
    return Page(limit=limit, after=after)


PageDep = Annotated[Page, Depends(get_page)]
