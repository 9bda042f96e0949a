"""The link builder ({base}/links): deep links with sub-ids, each with its
tracking URL and a QR code. Links are made by tracking.create_link, which
checks the destination against the program's allowed domains.

With HTMX the form's post answers with the new table row only (or, on a
mistake, the message, with status 422); without JavaScript it is an ordinary
post that comes back to the page.
"""

from __future__ import annotations

import io
from typing import Annotated

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partnerloop.access.portal_sessions import check_csrf_token
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import DomainError, NotFound
from partnerloop.programs import domains
from partnerloop.runtime import Runtime
from partnerloop.tracking import service as tracking
from partnerloop.tracking.models import Link
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import translator
from partnerloop.web.portal import queries
from partnerloop.web.portal.context import (
    Portal,
    message,
    open_portal,
    page,
    redirect,
    status_page,
)

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]


def link_rows(session: Session, links: list[Link], *, public_url: str) -> list[dict[str, object]]:
    """What the table shows per link: its tracking URL (on the program's
    tracking domain when it has one) and its preset sub-ids."""
    return [
        {
            "id": link.id,
            "code": link.code,
            "url": domains.tracking_url(
                session, program_id=link.program_id, code=link.code, public_url=public_url
            ),
            "destination_url": link.destination_url,
            "subs": [(name, value) for name in tracking.SUB_IDS if (value := getattr(link, name))],
            "created_at": link.created_at,
            "disabled": link.disabled_at is not None,
        }
        for link in links
    ]


def _links_page(
    request: Request,
    runtime: Runtime,
    portal: Portal,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    viewer = portal.signed_in()
    with runtime.sessions() as session:
        links = queries.links_of(
            session, program_id=portal.program.id, affiliate_id=viewer.affiliate_id
        )
        rows = link_rows(session, links, public_url=runtime.settings.public_url)
    return page(
        request,
        portal,
        "portal/links.html",
        status=status,
        current="/links",
        links=rows,
        error=error,
        values=values or {},
        sub_ids=tracking.SUB_IDS,
        shown_max=queries.LINKS_SHOWN,
    )


@router.get("/portal/{program_id}/links")
def links_page(program_id: str, request: Request, runtime: RuntimeDep) -> Response:
    portal = open_portal(request, runtime, program_id)
    if not portal.signed_in().approved:
        return status_page(request, portal, status=403, current="/links")
    return _links_page(request, runtime, portal)


@router.post("/portal/{program_id}/links")
def create_link(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    destination_url: FormText = "",
    sub1: FormText = "",
    sub2: FormText = "",
    sub3: FormText = "",
    sub4: FormText = "",
    sub5: FormText = "",
    csrf: FormText = "",
) -> Response:
    portal = open_portal(request, runtime, program_id)
    viewer = portal.signed_in()
    check_csrf_token(viewer.csrf, csrf)
    if not viewer.approved:
        return status_page(request, portal, status=403, current="/links")
    htmx = request.headers.get("hx-request") == "true"
    subs = {"sub1": sub1, "sub2": sub2, "sub3": sub3, "sub4": sub4, "sub5": sub5}
    values = {"destination_url": destination_url, **subs}
    try:
        with transaction(runtime.sessions) as session:
            link = tracking.create_link(
                session,
                program_id=program_id,
                affiliate_id=viewer.affiliate_id,
                destination_url=destination_url.strip(),
                subs=tracking.check_sub_ids(
                    {name: value.strip() or None for name, value in subs.items()}
                ),
                now=utcnow(),
            )
            row = link_rows(session, [link], public_url=runtime.settings.public_url)[0]
    except DomainError as error:
        text = message(request, portal, error)
        if htmx:
            response = page(request, portal, "portal/_message.html", status=error.status, text=text)
            response.headers["HX-Retarget"] = "#link-error"
            response.headers["HX-Reswap"] = "innerHTML"
            return response
        return _links_page(request, runtime, portal, status=error.status, error=text, values=values)
    if htmx:
        return page(request, portal, "portal/_link_row.html", link=row, fresh=True)
    return redirect(f"{portal.base}/links")


@router.get("/portal/{program_id}/links/{link_id}/qr.svg")
def link_qr(program_id: str, link_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """The link's tracking URL as a QR code (SVG), for its owner only: any other
    link, another affiliate's included, is not found."""
    portal = open_portal(request, runtime, program_id)
    viewer = portal.signed_in()
    with runtime.sessions() as session:
        link = queries.link_of(
            session, program_id=program_id, affiliate_id=viewer.affiliate_id, link_id=link_id
        )
        if link is None or not viewer.approved:
            raise NotFound(f"No link {link_id}.", code="link_not_found", field="link_id")
        url = domains.tracking_url(
            session, program_id=program_id, code=link.code, public_url=runtime.settings.public_url
        )
    t = translator(request, preferred=portal.language)
    out = io.BytesIO()
    segno.make(url, error="m").save(
        out, kind="svg", scale=4, border=2, xmldecl=False, title=t("portal.links.qr_title", url=url)
    )
    response = Response(out.getvalue(), media_type="image/svg+xml")
    # An SVG opened on its own is a document: no scripts, nothing fetched.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response
