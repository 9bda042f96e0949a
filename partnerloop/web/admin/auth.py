"""Staff login at /admin/login: password, then (when on) a TOTP code; logout.

- The session cookie (`pl_session`, HttpOnly, SameSite=Lax, Path=/, Secure
  when PARTNERLOOP_PUBLIC_URL is https) holds a random token; the database keeps
  its hash (partnerloop.access.sessions).
- CSRF: the login form, before any session, carries a double-submit token (the
  same random value in a cookie and in the form); every form after login
  carries the session's token. A post without it is refused and changes nothing.
- Throttling: 5 failed passwords or codes per account or client address in 15
  minutes make the next try wait (429 with Retry-After); an unknown e-mail
  costs the same and says the same as a wrong password.
"""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from partnerloop.access import sessions, staff, throttle
from partnerloop.access.models import StaffSession, StaffUser
from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import normalise_email
from partnerloop.core.db import transaction
from partnerloop.core.errors import Forbidden
from partnerloop.runtime import Runtime
from partnerloop.web.admin.guard import SESSION_COOKIE
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render, translator

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "pl_login_csrf"
COOKIE_PATH = "/admin"
# The session cookie is sent to the API too: staff may call it with their
# session (and the X-CSRF-Token header), under the same role matrix.
SESSION_COOKIE_PATH = "/"

FormText = Annotated[str, Form()]


def _secure(runtime: Runtime) -> bool:
    return runtime.settings.public_url.startswith("https://")


def client_ip(request: Request, runtime: Runtime) -> str | None:
    forwarded = request.headers.get("x-forwarded-for")
    if runtime.settings.trust_forwarded_for and forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else None


def login_form_token(request: Request) -> str:
    """The double-submit CSRF token of forms shown before login (the browser's, or new)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_login_form_cookie(response: Response, token: str, runtime: Runtime) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(runtime),
        path=COOKIE_PATH,
    )


def login_form_token_ok(request: Request, given: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


def _login_page(
    request: Request,
    runtime: Runtime,
    *,
    status: int = 200,
    error: str | None = None,
    email: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    token = login_form_token(request)
    response = render(
        request, "admin/login.html", status=status, csrf=token, error=error, email=email
    )
    set_login_form_cookie(response, token, runtime)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _throttled(request: Request, runtime: Runtime, wait: float, email: str) -> Response:
    minutes = max(math.ceil(wait / 60), 1)
    return _login_page(
        request,
        runtime,
        status=429,
        error=translator(request)("login.throttled", minutes=minutes),
        email=email,
        headers={"Retry-After": str(math.ceil(wait))},
    )


@router.get("/admin/login")
def login_form(request: Request, runtime: RuntimeDep) -> Response:
    return _login_page(request, runtime)


@router.post("/admin/login")
def login(
    request: Request,
    runtime: RuntimeDep,
    email: FormText = "",
    password: FormText = "",
    csrf: FormText = "",
) -> Response:
    t = translator(request)
    if not login_form_token_ok(request, csrf):
        return _login_page(request, runtime, status=403, error=t("login.stale_form"), email=email)
    now = utcnow()
    index = runtime.cipher.blind_index(normalise_email(email), field=staff.EMAIL_FIELD)
    keys = throttle.keys_for(index, client_ip(request, runtime))
    with transaction(runtime.sessions) as session:
        wait = throttle.wait_seconds(session, keys, now=now)
        if wait > 0:
            return _throttled(request, runtime, wait, email)
        user = staff.authenticate(session, runtime.cipher, email=email, password=password)
        if user is None:
            throttle.record_failure(session, keys, now=now)
            failed = True
        else:
            throttle.clear(session, keys)
            started = sessions.start(session, user, now=now)
            needs_code = not started.session.second_factor_done
            failed = False
    if failed:  # committed: the failure counts even though the answer is an error
        return _login_page(request, runtime, status=401, error=t("login.failed"), email=email)
    response = _redirect("/admin/login/code" if needs_code else "/admin")
    response.set_cookie(
        SESSION_COOKIE,
        started.token,
        httponly=True,
        samesite="lax",
        secure=_secure(runtime),
        path=SESSION_COOKIE_PATH,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


def _pending(request: Request, runtime: Runtime) -> tuple[StaffSession, StaffUser] | None:
    """The session of this browser and its user, if it exists at all (signed in or not)."""
    with transaction(runtime.sessions) as session:
        row = sessions.load(session, request.cookies.get(SESSION_COOKIE), now=utcnow())
        if row is None:
            return None
        user = session.get_one(StaffUser, row.user_id)
        session.expunge_all()
        return row, user


@router.get("/admin/login/code")
def code_form(request: Request, runtime: RuntimeDep) -> Response:
    found = _pending(request, runtime)
    if found is None:
        return _redirect("/admin/login")
    row, _ = found
    if row.second_factor_done:
        return _redirect("/admin")
    return render(request, "admin/code.html", csrf=row.csrf_token, error=None)


@router.post("/admin/login/code")
def code(
    request: Request, runtime: RuntimeDep, code: FormText = "", csrf: FormText = ""
) -> Response:
    t = translator(request)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        row = sessions.load(session, request.cookies.get(SESSION_COOKIE), now=now)
        if row is None:
            return _redirect("/admin/login")
        try:
            sessions.check_csrf(row, csrf)
        except Forbidden:
            return render(
                request, "admin/code.html", status=403, csrf=row.csrf_token,
                error=t("login.stale_form"),
            )  # fmt: skip
        user = session.get_one(StaffUser, row.user_id)
        keys = throttle.keys_for(user.email_index, client_ip(request, runtime))
        wait = throttle.wait_seconds(session, keys, now=now)
        if wait > 0:
            response = render(
                request, "admin/code.html", status=429, csrf=row.csrf_token,
                error=t("login.throttled", minutes=max(math.ceil(wait / 60), 1)),
            )  # fmt: skip
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        if staff.check_totp(runtime.cipher, user, code, now=now):
            sessions.pass_second_factor(row)
            throttle.clear(session, keys)
            return _redirect("/admin")
        throttle.record_failure(session, keys, now=now)
        csrf_token = row.csrf_token
    return render(request, "admin/code.html", status=401, csrf=csrf_token, error=t("code.failed"))


@router.post("/admin/logout")
def logout(request: Request, runtime: RuntimeDep, csrf: FormText = "") -> Response:
    with transaction(runtime.sessions) as session:
        row = sessions.load(session, request.cookies.get(SESSION_COOKIE), now=utcnow())
        if row is None:
            return _redirect("/admin/login")
        try:
            sessions.check_csrf(row, csrf)
        except Forbidden:
            # Still signed in: a forged post must not even log anyone out.
            return _login_page(
                request, runtime, status=403, error=translator(request)("login.stale_form")
            )
        sessions.end(session, row, now=utcnow())
    response = _redirect("/admin/login")
    response.delete_cookie(SESSION_COOKIE, path=SESSION_COOKIE_PATH)
    return response
