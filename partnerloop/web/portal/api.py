"""The portal's JSON API ({base}/api/...), for affiliates signed in with the
portal's session cookie: themselves, their stats, their links, their
commissions. Writes need the session's CSRF token in X-CSRF-Token.

The affiliate is always the session's: no route takes an affiliate id, so
there is nothing to point at someone else's data. Errors are problem+json.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.portal_sessions import check_csrf_token
from partnerloop.analytics import service as analytics
from partnerloop.commissions import service as commissions
from partnerloop.commissions.models import Commission
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Forbidden
from partnerloop.core.money import format_amount
from partnerloop.programs import domains
from partnerloop.tracking import service as tracking
from partnerloop.tracking.models import Link
from partnerloop.web.deps import CSRF_HEADER, PageDep, RuntimeDep
from partnerloop.web.portal import queries
from partnerloop.web.portal.context import Portal, Viewer, open_portal, parse_day

router = APIRouter(include_in_schema=False)


class ProgramOut(BaseModel):
    id: str
    name: str
    currency: str


class MeOut(BaseModel):
    id: str
    name: str
    email: str
    status: str
    language: str | None
    program: ProgramOut
    csrf_token: str = Field(description="Send it back in X-CSRF-Token with every write.")


class CommissionTotals(BaseModel):
    pending: str
    approved: str
    paid: str
    reversed: str
    declined: str


class StatsOut(BaseModel):
    program_id: str
    currency: str
    from_: date = Field(alias="from")
    to: date
    clicks: int
    unique_clicks: int
    conversions: int
    commissions: CommissionTotals


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination_url: str
    sub1: str | None = None
    sub2: str | None = None
    sub3: str | None = None
    sub4: str | None = None
    sub5: str | None = None


class LinkOut(BaseModel):
    id: str
    code: str
    url: str
    destination_url: str
    subs: dict[str, str]
    disabled: bool
    created_at: datetime


class LinkList(BaseModel):
    items: list[LinkOut]
    next_cursor: str | None


class CommissionOut(BaseModel):
    id: str
    amount: str
    currency: str
    state: str
    created_at: datetime
    paid_at: datetime | None
    decline_reason: str | None


class CommissionList(BaseModel):
    items: list[CommissionOut]
    next_cursor: str | None


def _approved(viewer: Viewer) -> None:
    if not viewer.approved:
        raise Forbidden(
            f"Your account is {viewer.status}; this opens once the program approved you.",
            code="affiliate_not_approved",
        )


def _signed_in(request: Request, runtime: RuntimeDep, program_id: str) -> tuple[Portal, Viewer]:
    portal = open_portal(request, runtime, program_id)
    return portal, portal.api_viewer()


def _link_out(link: Link, url: str) -> LinkOut:
    return LinkOut(
        id=link.id,
        code=link.code,
        url=url,
        destination_url=link.destination_url,
        subs={name: value for name in tracking.SUB_IDS if (value := getattr(link, name))},
        disabled=link.disabled_at is not None,
        created_at=link.created_at,
    )


def _commission_out(row: Commission) -> CommissionOut:
    return CommissionOut(
        id=row.id,
        amount=format_amount(row.amount_minor, row.currency),
        currency=row.currency,
        state=row.state,
        created_at=row.created_at,
        paid_at=row.paid_at,
        decline_reason=row.decline_reason if row.state == "declined" else None,
    )


@router.get("/portal/{program_id}/api/me", response_model=MeOut)
def me(program_id: str, request: Request, runtime: RuntimeDep) -> MeOut:
    portal, viewer = _signed_in(request, runtime, program_id)
    return MeOut(
        id=viewer.affiliate_id,
        name=viewer.name,
        email=viewer.email,
        status=viewer.status,
        language=viewer.language,
        program=ProgramOut(
            id=portal.program.id, name=portal.program.name, currency=portal.program.currency
        ),
        csrf_token=viewer.csrf,
    )


@router.get("/portal/{program_id}/api/stats", response_model=StatsOut, response_model_by_alias=True)
def stats(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: Annotated[str | None, Query()] = None,
) -> StatsOut:
    """Totals over a range of UTC days (default: the last 30), from the rollups."""
    portal, viewer = _signed_in(request, runtime, program_id)
    _approved(viewer)
    first, last = queries.period(parse_day(from_, field="from"), parse_day(to, field="to"))
    with runtime.sessions() as session:
        totals = analytics.stats(
            session,
            program_id=program_id,
            affiliate_id=viewer.affiliate_id,
            day_from=first,
            day_to=last,
        )
    currency = portal.program.currency
    return StatsOut.model_validate(
        {
            "program_id": program_id,
            "currency": currency,
            "from": first,
            "to": last,
            "clicks": totals.clicks,
            "unique_clicks": totals.unique_clicks,
            "conversions": totals.conversions,
            "commissions": {
                state: format_amount(value, currency)
                for state, value in totals.commissions_minor.items()
            },
        }
    )


@router.get("/portal/{program_id}/api/links", response_model=LinkList)
def list_links(program_id: str, request: Request, runtime: RuntimeDep, page: PageDep) -> LinkList:
    """The affiliate's own links in this program, oldest first (cursor pages)."""
    _, viewer = _signed_in(request, runtime, program_id)
    _approved(viewer)
    with runtime.sessions() as session:
        rows = tracking.list_links(
            session,
            program_id=program_id,
            affiliate_id=viewer.affiliate_id,
            after=page.after,
            limit=page.limit,
        )
        items = [
            _link_out(
                link,
                domains.tracking_url(
                    session,
                    program_id=program_id,
                    code=link.code,
                    public_url=runtime.settings.public_url,
                ),
            )
            for link in rows
        ]
    return LinkList(items=items, **page.render(rows))


@router.post("/portal/{program_id}/api/links", status_code=201, response_model=LinkOut)
def create_link(program_id: str, body: LinkIn, request: Request, runtime: RuntimeDep) -> LinkOut:
    """A deep link to a page on the program's allowed domains, with sub-ids."""
    _, viewer = _signed_in(request, runtime, program_id)
    check_csrf_token(viewer.csrf, request.headers.get(CSRF_HEADER))
    _approved(viewer)
    with transaction(runtime.sessions) as session:
        link = tracking.create_link(
            session,
            program_id=program_id,
            affiliate_id=viewer.affiliate_id,
            destination_url=body.destination_url.strip(),
            subs=tracking.check_sub_ids(
                {name: getattr(body, name) or None for name in tracking.SUB_IDS}
            ),
            now=utcnow(),
        )
        url = domains.tracking_url(
            session, program_id=program_id, code=link.code, public_url=runtime.settings.public_url
        )
        return _link_out(link, url)


@router.get("/portal/{program_id}/api/commissions", response_model=CommissionList)
def list_commissions(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    page: PageDep,
    state: str | None = None,
) -> CommissionList:
    """The affiliate's own commissions in this program, oldest first (cursor pages)."""
    _, viewer = _signed_in(request, runtime, program_id)
    _approved(viewer)
    with runtime.sessions() as session:
        rows = commissions.list_commissions(
            session,
            program_id=program_id,
            affiliate_id=viewer.affiliate_id,
            state=state or None,
            created_from=None,
            created_to=None,
            after=page.after,
            limit=page.limit,
        )
    return CommissionList(items=[_commission_out(row) for row in rows], **page.render(rows))
