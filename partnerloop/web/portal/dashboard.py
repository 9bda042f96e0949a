"""The portal's start: the list of portals (/portal), an affiliate's dashboard
({base}/) and their coupons ({base}/coupons).

The figures come from the daily rollups (analytics), so the dashboard costs
the same for an affiliate with ten clicks as for one with ten million.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from partnerloop.analytics import service as analytics
from partnerloop.programs.models import Program
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render
from partnerloop.web.portal import queries
from partnerloop.web.portal.context import (
    brand_of,
    open_portal,
    page,
    parse_day,
    redirect,
    status_page,
)

router = APIRouter(include_in_schema=False)

DayQuery = Annotated[str | None, Query(description="YYYY-MM-DD")]


@router.get("/portal")
def portals(request: Request, runtime: RuntimeDep) -> Response:
    """Where an affiliate starts without a program's address: the one portal
    there is, or the list of them."""
    with runtime.sessions() as session:
        programs = list(session.scalars(select(Program).order_by(Program.created_at, Program.id)))
        listed = [(program.id, brand_of(program).portal_name) for program in programs]
    if len(listed) == 1:
        return redirect(f"/portal/{listed[0][0]}/")
    return render(request, "portal/index.html", portals=listed)


@router.get("/portal/{program_id}")
def portal_root(program_id: str, request: Request, runtime: RuntimeDep) -> Response:
    portal = open_portal(request, runtime, program_id)
    return redirect(f"{portal.base}/")


@router.get("/portal/{program_id}/")
def dashboard(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: DayQuery = None,
) -> Response:
    portal = open_portal(request, runtime, program_id)
    viewer = portal.signed_in()
    if not viewer.approved:
        return status_page(request, portal, status=200, current="/")
    first, last = queries.period(parse_day(from_, field="from"), parse_day(to, field="to"))
    with runtime.sessions() as session:
        totals = analytics.stats(
            session,
            program_id=program_id,
            affiliate_id=viewer.affiliate_id,
            day_from=first,
            day_to=last,
        )
        all_time = analytics.stats(
            session,
            program_id=program_id,
            affiliate_id=viewer.affiliate_id,
            day_from=None,
            day_to=None,
        )
        days = queries.daily_rows(
            session,
            program_id=program_id,
            affiliate_id=viewer.affiliate_id,
            day_from=first,
            day_to=last,
        )
        recent = queries.recent_commissions(
            session, program_id=program_id, affiliate_id=viewer.affiliate_id
        )
    return page(
        request,
        portal,
        "portal/dashboard.html",
        current="/",
        first=first,
        last=last,
        totals=totals,
        paid_all_time=all_time.commissions_minor["paid"],
        days=days,
        recent=recent,
        states=analytics.COMMISSION_STATES,
    )


@router.get("/portal/{program_id}/coupons")
def coupons(program_id: str, request: Request, runtime: RuntimeDep) -> Response:
    portal = open_portal(request, runtime, program_id)
    viewer = portal.signed_in()
    if not viewer.approved:
        return status_page(request, portal, status=403, current="/coupons")
    with runtime.sessions() as session:
        rows = queries.coupons_of(session, program_id=program_id, affiliate_id=viewer.affiliate_id)
    return page(request, portal, "portal/coupons.html", current="/coupons", coupons=rows)
