"""The weekly report page at /admin/report?program=&week=YYYY-Www (default: the
last complete ISO week): the same report the Monday e-mail carries, built by
partnerloop.integrations.weekly_report.build."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from partnerloop.access.roles import Permission
from partnerloop.analytics.report import parse_week, week_of
from partnerloop.core.clock import utcnow
from partnerloop.integrations import weekly_report
from partnerloop.web.admin.guard import ProgramQuery, StaffDep
from partnerloop.web.admin.report_mail import report_context
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render, translator

router = APIRouter(include_in_schema=False)

WeekQuery = Annotated[str | None, Query(description="ISO week, YYYY-Www")]


@router.get("/admin/report")
def report_page(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    week: WeekQuery = None,
) -> Response:
    staff.require(Permission.READ)
    if not staff.programs:
        return render(
            request,
            "admin/dashboard_empty.html",
            language=staff.language,
            staff=staff,
            program=None,
        )
    chosen = staff.program(program)
    now = utcnow()
    shown = parse_week(week, today=now.date())
    with runtime.sessions() as session:
        report = weekly_report.build(
            session, runtime.cipher, program_id=chosen.id, week=shown, now=now
        )
    t = translator(request, preferred=staff.language)
    return render(
        request,
        "admin/report.html",
        language=staff.language,
        staff=staff,
        program=chosen,
        previous_week=shown.previous(),
        next_week=shown.next() if shown.next() <= week_of(now.date()) else None,
        **report_context(report, t),
    )
