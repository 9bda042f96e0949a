"""What routes get from the app: the runtime, the caller, pagination."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from sqlalchemy import select

from partnerloop.access import service as access
from partnerloop.access import sessions, staff
from partnerloop.access.models import StaffUser
from partnerloop.access.service import Principal
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Forbidden, InvalidInput, Unauthorized
from partnerloop.programs.models import Program
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


# The admin pages' session cookie; the API accepts it too (see get_principal).
STAFF_COOKIE = "pl_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_principal(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Principal:
    """An API key (Authorization: Bearer), else a signed-in staff session cookie.

    A browser sends cookies on its own, so with the cookie a changing request
    must also carry the session's CSRF token in X-CSRF-Token; a key needs none.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        with runtime.sessions() as session:
            return access.authenticate(session, presented=token.strip())
    cookie = request.cookies.get(STAFF_COOKIE)
    if not header and cookie:
        return _staff_principal(request, runtime, cookie)
    raise Unauthorized(
        "Missing API key. Send 'Authorization: Bearer <key>'.", code="missing_api_key"
    )


def _staff_principal(request: Request, runtime: Runtime, cookie: str) -> Principal:
    with transaction(runtime.sessions) as session:
        row = sessions.load(session, cookie, now=utcnow())
        if not sessions.signed_in(row):
            raise Unauthorized(
                "Your admin session has ended; sign in again or send an API key.",
                code="session_expired",
            )
        assert row is not None
        if request.method not in _SAFE_METHODS:
            try:
                sessions.check_csrf(row, request.headers.get(CSRF_HEADER))
            except Forbidden:
                raise Forbidden(
                    "With a session cookie, send the session's CSRF token in X-CSRF-Token.",
                    code="csrf_failed",
                ) from None
        user = session.get_one(StaffUser, row.user_id)
        query = select(Program.id).where(Program.require_two_factor.is_(True)).limit(1)
        if user.program_id is not None:
            query = query.where(Program.id == user.program_id)
        if session.scalar(query) is not None and not staff.has_totp(user):
            raise Forbidden(
                "This program requires two-factor sign-in; set it up under /admin/account.",
                code="two_factor_required",
            )
        return access.staff_principal(user_id=user.id, role=user.role, program_id=user.program_id)


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
