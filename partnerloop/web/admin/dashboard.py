"""The admin dashboard at /admin (placeholder until the dashboard lands)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from partnerloop.access.roles import Permission
from partnerloop.web.admin.guard import ProgramQuery, StaffDep
from partnerloop.web.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def dashboard(request: Request, staff: StaffDep, program: ProgramQuery = None) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program) if staff.programs else None
    return render(request, "admin/home.html", language=staff.language, staff=staff, program=chosen)
