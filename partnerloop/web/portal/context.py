"""What every portal page knows: the program (and its white label), where the
portal lives (its base), and the signed-in affiliate, if any.

Where the portal lives: on the main host program P's portal is under
`/portal/P`; on the program's own portal domain the ASGI layer rewrites the
path to `/portal/P...` and sets `scope["state"]["portal_base"] = ""`, so every
link, redirect and form action is built from `base_of(request, P)`.

The session cookie `pl_portal` (HttpOnly, SameSite=Lax, Secure on https) has
the base as its path ("/" on a portal domain), so the sessions of two programs
on the main host never meet; the server checks the program anyway
(partnerloop.access.portal_sessions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from partnerloop.access import portal_sessions
from partnerloop.affiliates import portal as affiliate_portal
from partnerloop.affiliates import service as affiliates
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput, NotFound, Unauthorized
from partnerloop.core.money import format_amount
from partnerloop.programs.branding import (
    DEFAULT_ACCENT_COLOR,
    DEFAULT_BRAND_COLOR,
    branding_of,
)
from partnerloop.programs.models import Program
from partnerloop.runtime import Runtime
from partnerloop.web.admin.guard import PageRedirect
from partnerloop.web.i18n import catalogue
from partnerloop.web.pages import render, translator

SESSION_COOKIE = "pl_portal"
# The double-submit CSRF token of the forms shown before login (signup, login).
LOGIN_CSRF_COOKIE = "pl_portal_csrf"

_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")


def base_of(request: Request, program_id: str) -> str:
    """The path prefix of this program's portal for this request: "" on the
    program's own domain, else /portal/{program_id}."""
    state = request.scope.get("state") or {}
    if "portal_base" in state:
        return str(state["portal_base"])
    return f"/portal/{program_id}"


def cookie_path(base: str) -> str:
    return base or "/"


def secure_cookies(runtime: Runtime) -> bool:
    return runtime.settings.public_url.startswith("https://")


def client_ip(request: Request, runtime: Runtime) -> str | None:
    forwarded = request.headers.get("x-forwarded-for")
    if runtime.settings.trust_forwarded_for and forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else None


@dataclass(frozen=True)
class Brand:
    """The program's white label, safe to put in a page: colours checked to be
    #RRGGBB (they go into a <style>), the logo only as an http(s) URL."""

    portal_name: str
    logo_url: str | None
    brand_color: str
    accent_color: str
    texts: dict[str, dict[str, str]]
    mail_sender: str | None = None  # the From of the portal's e-mails (None: the default)

    def text(self, key: str, language: str) -> str | None:
        """The program's text in this language, else in English, else None."""
        by_language = self.texts.get(key) or {}
        for choice in (language, "en"):
            value = by_language.get(choice)
            if isinstance(value, str) and value.strip():
                return value
        return None


def brand_of(program: Program) -> Brand:
    branding = branding_of(program)
    logo = branding.logo_url
    if logo is not None and not re.match(r"^https?://[^\s\"'<>]+$", logo):
        logo = None
    texts = branding.texts if isinstance(branding.texts, dict) else {}
    return Brand(
        portal_name=branding.portal_name,
        logo_url=logo,
        brand_color=branding.brand_color
        if _COLOR_RE.match(branding.brand_color)
        else DEFAULT_BRAND_COLOR,
        accent_color=branding.accent_color
        if _COLOR_RE.match(branding.accent_color)
        else DEFAULT_ACCENT_COLOR,
        texts={str(k): v for k, v in texts.items() if isinstance(v, dict)},
        mail_sender=branding.mail_sender,
    )


@dataclass(frozen=True)
class ProgramView:
    id: str
    name: str
    currency: str
    signup_approval: str
    allowed_domains: tuple[str, ...]
    fields: tuple[affiliate_portal.SignupField, ...]
    brand: Brand


@dataclass(frozen=True)
class Viewer:
    """The signed-in affiliate (on this program's portal)."""

    affiliate_id: str
    name: str
    email: str
    status: str  # pending | approved | rejected | suspended
    language: str | None
    csrf: str

    @property
    def approved(self) -> bool:
        return self.status == "approved"


@dataclass(frozen=True)
class Portal:
    program: ProgramView
    base: str
    viewer: Viewer | None

    @property
    def language(self) -> str | None:
        """The affiliate's own choice; None: the browser's (Accept-Language)."""
        return self.viewer.language if self.viewer is not None else None

    def signed_in(self) -> Viewer:
        """The affiliate, or (for a page) a redirect to the login page."""
        if self.viewer is None:
            raise PageRedirect(f"{self.base}/login")
        return self.viewer

    def api_viewer(self) -> Viewer:
        """The affiliate, or (for the JSON API) 401."""
        if self.viewer is None:
            raise Unauthorized(
                "Sign in to the portal first; the API uses the portal's session cookie.",
                code="portal_session_required",
            )
        return self.viewer


def program_view(program: Program) -> ProgramView:
    return ProgramView(
        id=program.id,
        name=program.name,
        currency=program.currency,
        signup_approval=program.signup_approval,
        allowed_domains=tuple(program.allowed_domains or ()),
        fields=tuple(affiliate_portal.fields_of(program)),
        brand=brand_of(program),
    )


def open_portal(request: Request, runtime: Runtime, program_id: str) -> Portal:
    """The program (404 if there is none) and the affiliate signed in to its
    portal: a session of another program, of an affiliate no longer enrolled,
    or an ended one, is no session."""
    base = base_of(request, program_id)
    with transaction(runtime.sessions) as session:
        program = session.get(Program, program_id)
        if program is None:
            raise NotFound(f"No program {program_id}.", code="program_not_found")
        view = program_view(program)
        viewer = None
        row = portal_sessions.load(
            session, request.cookies.get(SESSION_COOKIE), program_id=program_id, now=utcnow()
        )
        if row is not None:
            affiliate = affiliate_portal.member(
                session, program_id=program_id, affiliate_id=row.affiliate_id
            )
            if affiliate is not None:
                shown = affiliates.view(session, runtime.cipher, affiliate)
                viewer = Viewer(
                    affiliate_id=affiliate.id,
                    name=shown.name,
                    email=shown.email,
                    status=affiliate.status,
                    language=affiliate.language,
                    csrf=row.csrf_token,
                )
    return Portal(program=view, base=base, viewer=viewer)


def page(
    request: Request,
    portal: Portal,
    template: str,
    *,
    status: int = 200,
    current: str = "",
    **context: Any,
) -> HTMLResponse:
    """A portal page: its layout needs the portal, and `current` (the page's
    path after the base) marks the menu and brings the language switch back."""
    return render(
        request,
        template,
        status=status,
        language=portal.language,
        portal=portal,
        brand=portal.program.brand,
        base=portal.base,
        viewer=portal.viewer,
        current=current,
        money=money,
        **context,
    )


def status_page(request: Request, portal: Portal, *, status: int, current: str) -> HTMLResponse:
    """What a pending, rejected or suspended affiliate sees instead of a feature."""
    return page(request, portal, "portal/status.html", status=status, current=current)


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


def set_session_cookie(response: Response, runtime: Runtime, base: str, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(runtime),
        path=cookie_path(base),
    )


def money(amount_minor: int, currency: str, language: str) -> str:
    """19.99 EUR in English, 19,99 EUR in Dutch (no grouping: amounts stay copyable)."""
    text = format_amount(amount_minor, currency)
    if language == "nl":
        text = text.replace(".", ",")
    return f"{text}\u00a0{currency}"


def message(request: Request, portal: Portal, error: InvalidInput | Exception) -> str:
    """A domain error as the page's language says it: by its code when the
    catalogue has `portal.error.<code>`, else the error's own sentence."""
    t = translator(request, preferred=portal.language)
    code = getattr(error, "code", "")
    key = f"portal.error.{code}"
    if key in catalogue("en"):
        return t(key)
    return str(getattr(error, "detail", error))


def parse_day(value: str | None, *, field: str) -> date | None:
    if value is None or value.strip() == "":
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{field} must be a date (YYYY-MM-DD).", code="invalid_date", field=field
        ) from None
