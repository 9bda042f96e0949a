"""What the staff management pages (affiliates, commissions, connectors,
deliveries, audit) share: paging links, Post/Redirect/Get, HTMX detection,
dates as people read them, and the audit entry every change writes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from partnerloop.audit import service as audit_log
from partnerloop.core.clock import utcnow
from partnerloop.web.admin.guard import ProgramChoice, Staff
from partnerloop.web.pages import render

PAGE_SIZE = 50
EXPORT_BATCH = 500
MAX_EXPORT_ROWS = 100_000  # a bound on the work one download may ask for

FormText = Annotated[str, Form()]

# HTMX leaves 4xx/5xx answers unswapped by default, so a refused click would
# look like nothing happened. This shows the error page's message (its
# role=alert paragraph) in the page's #flash region instead.
HTMX_CONFIG = json.dumps(
    {
        "responseHandling": [
            {"code": "204", "swap": False},
            {"code": "[23]..", "swap": True},
            {
                "code": "[45]..",
                "swap": True,
                "error": True,
                "target": "#flash",
                "swapOverride": "innerHTML",  # the rows' outerHTML would replace #flash
                "select": "[role=alert]",
            },
        ]
    }
)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def row_fragment(
    request: Request,
    template: str,
    *,
    staff: Staff,
    program: ProgramChoice,
    row: object,
    back: str,
    **flags: bool,
) -> Response:
    """The one table row an HTMX action changed, rendered in place."""
    return render(
        request,
        template,
        language=staff.language,
        staff=staff,
        program=program,
        row=row,
        back=back,
        **flags,
    )


def see_other(location: str) -> RedirectResponse:
    """Post/Redirect/Get: a reload after a change does not post it again."""
    return RedirectResponse(location, status_code=303)


def back_to(given: str | None, default: str) -> str:
    """Where a form came from (its `next` field), if it is one of our admin pages;
    anything else (another site, a scheme-relative //host) is an open redirect."""
    if (
        given
        and given.startswith("/admin")
        and not given.startswith("//")
        and "\\" not in given
        and not any(ord(c) < 32 for c in given)
    ):
        return given
    return default


def current_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def link(path: str, **params: str | None) -> str:
    """`path?a=1&b=2` with the empty parameters left out."""
    kept = {name: value for name, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else ""


def audit(
    session: Session,
    staff: Staff,
    *,
    action: str,
    subject_kind: str,
    subject_id: str,
    program_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """The audit entry of a staff change, in the change's own transaction.
    Details carry ids and settings, never personal data."""
    audit_log.record(
        session,
        staff.actor,
        action=action,
        subject_kind=subject_kind,
        subject_id=subject_id,
        program_id=program_id,
        now=utcnow(),
        details=details,
    )
