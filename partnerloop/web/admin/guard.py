"""Who is looking at an admin page, and what they may do there.

Every admin page takes `StaffDep`: it loads the browser's staff session and
answers for itself when there is none (a redirect to the login page; for an
HTMX request, an HX-Redirect header), when the code step is still open, or
when the program requires two-factor and the user has not set it up yet.
Pages then call `staff.require(Permission...)` before they show or change
anything: the role matrix (partnerloop.access.roles) is enforced here, on the
server, whatever the page showed or hid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import select

from partnerloop.access import sessions, staff
from partnerloop.access.models import StaffUser
from partnerloop.access.roles import Permission, Role, allows
from partnerloop.audit.service import Actor
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Forbidden, NotFound
from partnerloop.programs.models import Program
from partnerloop.runtime import Runtime
from partnerloop.web.deps import STAFF_COOKIE, RuntimeDep

SESSION_COOKIE = STAFF_COOKIE
# Two-factor setup and logout stay open to a user who must still set it up.
OPEN_WITHOUT_TWO_FACTOR = ("/admin/account", "/admin/logout")


class PageRedirect(Exception):
    """Answer a page request with a redirect (see problems.install)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass(frozen=True)
class ProgramChoice:
    id: str
    name: str
    currency: str


@dataclass(frozen=True)
class Staff:
    user_id: str
    email: str
    role: Role
    bound_program_id: str | None  # None: every program
    csrf: str
    language: str | None
    has_two_factor: bool
    programs: tuple[ProgramChoice, ...]  # the programs this user may see

    @property
    def actor(self) -> Actor:
        return Actor("staff", self.user_id)

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(
                f"Your role ({self.role.value}) does not allow this.", code="role_forbids"
            )

    def check_csrf(self, given: str | None) -> None:
        """Every form post carries the session's token; without it nothing changes."""
        sessions.check_csrf_token(self.csrf, given)

    def program(self, requested: str | None) -> ProgramChoice:
        """The program a page shows: the one asked for (if this user may see it),
        else the first. A program outside the user's reach is 'not found'."""
        if not self.programs:
            raise NotFound("There is no program yet.", code="program_not_found")
        if requested:
            for choice in self.programs:
                if choice.id == requested:
                    return choice
            raise NotFound(f"No program {requested}.", code="program_not_found", field="program")
        return self.programs[0]


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def load_staff(request: Request, runtime: Runtime) -> Staff:
    now = utcnow()
    with transaction(runtime.sessions) as session:
        row = sessions.load(session, request.cookies.get(SESSION_COOKIE), now=now)
        if row is None:
            raise PageRedirect("/admin/login")
        if not sessions.signed_in(row):
            raise PageRedirect("/admin/login/code")
        user = session.get_one(StaffUser, row.user_id)
        query = select(Program).order_by(Program.created_at, Program.id)
        if user.program_id is not None:
            query = query.where(Program.id == user.program_id)
        programs = list(session.scalars(query))
        result = Staff(
            user_id=user.id,
            email=staff.email_of(runtime.cipher, user),
            role=Role(user.role),
            bound_program_id=user.program_id,
            csrf=row.csrf_token,
            language=user.language,
            has_two_factor=staff.has_totp(user),
            programs=tuple(ProgramChoice(p.id, p.name, p.currency) for p in programs),
        )
        must_set_up = any(p.require_two_factor for p in programs)
    if (
        must_set_up
        and not result.has_two_factor
        and not request.url.path.startswith(OPEN_WITHOUT_TWO_FACTOR)
    ):
        raise PageRedirect("/admin/account/two-factor?required=1")
    return result


def get_staff(request: Request, runtime: RuntimeDep) -> Staff:
    return load_staff(request, runtime)


StaffDep = Annotated[Staff, Depends(get_staff)]
ProgramQuery = Annotated[str | None, Query(alias="program", description="Program id")]


def redirect_response_headers(request: Request, location: str) -> tuple[int, dict[str, str]]:
    """A full-page redirect, also for HTMX (which would otherwise swap the
    login page into a fragment)."""
    if _is_htmx(request):
        return 200, {"HX-Redirect": location}
    return 303, {"Location": location}
