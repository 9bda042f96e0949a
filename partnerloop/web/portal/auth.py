"""Affiliates sign up, log in and out of a program's portal.

- CSRF: the signup and login forms, shown before any session, carry a
  double-submit token (the same random value in a cookie and in the form);
  every form after login carries the session's token. A post without it is
  refused (403) and changes nothing.
- Throttling: 5 failed passwords per account or 20 per client address in 15
  minutes make the next try wait (429 with Retry-After); an unknown e-mail
  costs the same and says the same as a wrong password.
- Signing up with an e-mail that has an account: see affiliates.portal. The
  password that opens it signs the affiliate in (and into this program); any
  other gets a neutral answer and counts as a failed login.
"""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from partnerloop.access import portal_sessions, throttle
from partnerloop.affiliates import portal as affiliate_portal
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Forbidden
from partnerloop.runtime import Runtime
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.i18n import LANGUAGES
from partnerloop.web.pages import translator
from partnerloop.web.portal.context import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Portal,
    client_ip,
    cookie_path,
    open_portal,
    page,
    redirect,
    secure_cookies,
    set_session_cookie,
)

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]
FIELD_PREFIX = "field_"  # the program's own questions, apart from ours in the form
# Pages the language switch may send the affiliate back to (never a URL it is given).
RETURN_PAGES = ("/", "/links", "/coupons", "/payouts")


def pre_login_page(
    request: Request,
    runtime: Runtime,
    portal: Portal,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = page(request, portal, template, status=status, csrf=token, **context)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(runtime),
        path=cookie_path(portal.base),
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def form_is_ours(request: Request, csrf: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    return bool(expected) and hmac.compare_digest(expected.encode(), csrf.encode())


def _signed_in_response(runtime: Runtime, portal: Portal, token: str) -> Response:
    response = redirect(f"{portal.base}/")
    set_session_cookie(response, runtime, portal.base, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=cookie_path(portal.base))
    return response


def _wait_text(request: Request, portal: Portal, wait: float) -> str:
    t = translator(request, preferred=portal.language)
    return t("portal.login.throttled", minutes=max(math.ceil(wait / 60), 1))


# --- signup -------------------------------------------------------------------------------


def _signup_page(
    request: Request,
    runtime: Runtime,
    portal: Portal,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    alert: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return pre_login_page(
        request,
        runtime,
        portal,
        "portal/signup.html",
        status=status,
        headers=headers,
        errors=errors or {},
        values=values or {},
        alert=alert,
        prefix=FIELD_PREFIX,
    )


@router.get("/portal/{program_id}/signup")
def signup_form(program_id: str, request: Request, runtime: RuntimeDep) -> Response:
    portal = open_portal(request, runtime, program_id)
    if portal.viewer is not None:
        return redirect(f"{portal.base}/")
    return _signup_page(request, runtime, portal)


@router.post("/portal/{program_id}/signup")
async def signup(program_id: str, request: Request, runtime: RuntimeDep) -> Response:
    # The program's questions are fields known only at run time: read the form
    # whole, then do the (blocking) database and argon2 work in a thread.
    form = await request.form()
    raw = {key: value for key, value in form.items() if isinstance(value, str)}
    return await run_in_threadpool(_signup, program_id, request, runtime, raw)


def _signup(program_id: str, request: Request, runtime: Runtime, raw: dict[str, str]) -> Response:
    portal = open_portal(request, runtime, program_id)
    t = translator(request, preferred=portal.language)
    values = {k: v for k, v in raw.items() if k not in ("password", "csrf")}
    if not form_is_ours(request, raw.get("csrf", "")):
        return _signup_page(
            request, runtime, portal, status=403, values=values, alert=t("portal.stale_form")
        )
    form = affiliate_portal.SignupForm(
        email=raw.get("email", ""),
        name=raw.get("name", ""),
        password=raw.get("password", ""),
        answers={
            key.removeprefix(FIELD_PREFIX): value
            for key, value in raw.items()
            if key.startswith(FIELD_PREFIX)
        },
        accepted_terms=raw.get("terms", "") != "",
    )
    language = t.language
    fields = {field.name: field for field in portal.program.fields}
    _, problems = affiliate_portal.check_signup(portal.program.fields, form)
    if problems:
        errors = {
            problem.field: t(
                f"portal.error.{problem.code}",
                field=fields[problem.field].label(language)
                if problem.field in fields
                else problem.field,
            )
            for problem in problems
        }
        return _signup_page(
            request,
            runtime,
            portal,
            status=422,
            errors=errors,
            values=values,
            alert=t("portal.signup.fix", count=len(errors)),
        )
    now = utcnow()
    keys = throttle.keys_for(
        affiliate_portal.email_index(runtime.cipher, form.email), client_ip(request, runtime)
    )
    with transaction(runtime.sessions) as session:
        wait = throttle.wait_seconds(session, keys, now=now)
        if wait > 0:
            return _signup_page(
                request,
                runtime,
                portal,
                status=429,
                values=values,
                alert=_wait_text(request, portal, wait),
                headers={"Retry-After": str(math.ceil(wait))},
            )
        result = affiliate_portal.sign_up(
            session, runtime.cipher, program_id=program_id, form=form, now=now
        )
        if result.affiliate is None:
            throttle.record_failure(session, keys, now=now)
            token = None
        else:
            throttle.clear(session, keys)
            token = portal_sessions.start(
                session, affiliate_id=result.affiliate.id, program_id=program_id, now=now
            ).token
    if token is None:  # committed: the failure counts though the answer is neutral
        return page(request, portal, "portal/known.html")
    return _signed_in_response(runtime, portal, token)


# --- login and logout ---------------------------------------------------------------------


@router.get("/portal/{program_id}/login")
def login_form(program_id: str, request: Request, runtime: RuntimeDep) -> Response:
    portal = open_portal(request, runtime, program_id)
    if portal.viewer is not None:
        return redirect(f"{portal.base}/")
    return pre_login_page(request, runtime, portal, "portal/login.html", error=None, email="")


@router.post("/portal/{program_id}/login")
def login(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    email: FormText = "",
    password: FormText = "",
    csrf: FormText = "",
) -> Response:
    portal = open_portal(request, runtime, program_id)
    t = translator(request, preferred=portal.language)

    def again(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
        return pre_login_page(
            request,
            runtime,
            portal,
            "portal/login.html",
            status=status,
            error=error,
            email=email,
            headers=headers,
        )

    if not form_is_ours(request, csrf):
        return again(403, t("portal.stale_form"))
    now = utcnow()
    keys = throttle.keys_for(
        affiliate_portal.email_index(runtime.cipher, email), client_ip(request, runtime)
    )
    with transaction(runtime.sessions) as session:
        wait = throttle.wait_seconds(session, keys, now=now)
        if wait > 0:
            return again(
                429, _wait_text(request, portal, wait), {"Retry-After": str(math.ceil(wait))}
            )
        affiliate = affiliate_portal.authenticate(
            session, runtime.cipher, program_id=program_id, email=email, password=password
        )
        if affiliate is None:
            throttle.record_failure(session, keys, now=now)
            token = None
        else:
            throttle.clear(session, keys)
            token = portal_sessions.start(
                session, affiliate_id=affiliate.id, program_id=program_id, now=now
            ).token
    if token is None:  # committed: the failure counts even though the answer is an error
        return again(401, t("portal.login.failed"))
    return _signed_in_response(runtime, portal, token)


@router.post("/portal/{program_id}/logout")
def logout(program_id: str, request: Request, runtime: RuntimeDep, csrf: FormText = "") -> Response:
    portal = open_portal(request, runtime, program_id)
    with transaction(runtime.sessions) as session:
        row = portal_sessions.load(
            session, request.cookies.get(SESSION_COOKIE), program_id=program_id, now=utcnow()
        )
        if row is None:
            return redirect(f"{portal.base}/login")
        try:
            portal_sessions.check_csrf(row, csrf)
        except Forbidden:
            # Still signed in: a forged post must not even log anyone out.
            t = translator(request, preferred=portal.language)
            return page(
                request,
                portal,
                "portal/error.html",
                status=403,
                status_code=403,
                detail=t("portal.stale_form"),
            )
        portal_sessions.end(session, row, now=utcnow())
    response = redirect(f"{portal.base}/login")
    response.delete_cookie(SESSION_COOKIE, path=cookie_path(portal.base))
    return response


@router.post("/portal/{program_id}/language")
def choose_language(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    language: FormText = "",
    csrf: FormText = "",
    back: FormText = "/",
) -> Response:
    """The affiliate's language for the portal, kept on their account."""
    portal = open_portal(request, runtime, program_id)
    viewer = portal.signed_in()
    portal_sessions.check_csrf_token(viewer.csrf, csrf)
    with transaction(runtime.sessions) as session:
        affiliate = affiliate_portal.member(
            session, program_id=program_id, affiliate_id=viewer.affiliate_id
        )
        if affiliate is None:
            return redirect(f"{portal.base}/login")
        affiliate_portal.set_language(affiliate, language, allowed=LANGUAGES)
    return redirect(f"{portal.base}{back if back in RETURN_PAGES else '/'}")
