"""Forgotten passwords: /admin/password/forgot sends a reset link by e-mail,
/admin/password/reset?token=... sets a new password.

The answer to "send me a link" is the same whether the address has an account
or not, so the form tells nobody who has one; at most 5 requests per account
(20 per address) in 15 minutes, so it cannot flood a mailbox. The link is signed and expires
in an hour (partnerloop.access.reset); the e-mail goes out through the outbox,
so it is sent even if the mail server was down for a while, and never twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partnerloop.access import reset, staff, throttle
from partnerloop.access.models import StaffUser
from partnerloop.audit import service as audit
from partnerloop.audit.service import Actor
from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import normalise_email
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.integrations import mail_outbox
from partnerloop.runtime import Runtime
from partnerloop.web.admin.auth import (
    client_ip,
    login_form_token,
    login_form_token_ok,
    set_login_form_cookie,
)
from partnerloop.web.deps import RuntimeDep, wake_worker
from partnerloop.web.pages import render, translator

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]


def _forgot_page(
    request: Request, runtime: Runtime, *, status: int = 200, sent: bool, error: str | None
) -> Response:
    token = login_form_token(request)
    response = render(
        request, "admin/forgot.html", status=status, csrf=token, sent=sent, error=error
    )
    set_login_form_cookie(response, token, runtime)
    return response


@router.get("/admin/password/forgot")
def forgot_form(request: Request, runtime: RuntimeDep) -> Response:
    return _forgot_page(request, runtime, sent=False, error=None)


@router.post("/admin/password/forgot")
def forgot(
    request: Request, runtime: RuntimeDep, email: FormText = "", csrf: FormText = ""
) -> Response:
    if not login_form_token_ok(request, csrf):
        error = translator(request)("login.stale_form")
        return _forgot_page(request, runtime, status=403, sent=False, error=error)
    now = utcnow()
    index = runtime.cipher.blind_index(normalise_email(email), field=staff.EMAIL_FIELD)
    # Counted apart from logins (a burst of reset requests locks nobody out of
    # signing in), with the login limits: 5 per account, 20 per address in 15 min.
    keys = [
        key.replace("account:", "reset:account:").replace("address:", "address:reset:")
        for key in throttle.keys_for(index, client_ip(request, runtime))
    ]
    with transaction(runtime.sessions) as session:
        if throttle.wait_seconds(session, keys, now=now) <= 0:
            throttle.record_failure(session, keys, now=now)
            user = staff.find_by_email(session, runtime.cipher, email)
            if user is not None:
                _queue_reset_mail(request, runtime, session, user, now=now)
    wake_worker(request)
    # The same answer in every case: sent, unknown address, throttled.
    return _forgot_page(request, runtime, sent=True, error=None)


def _queue_reset_mail(
    request: Request, runtime: Runtime, session: Session, user: StaffUser, *, now: datetime
) -> None:
    token = reset.make_token(
        runtime.cipher, kind="staff", account_id=user.id, password_hash=user.password_hash, now=now
    )
    t = translator(request, preferred=user.language)
    link = f"{runtime.settings.public_url}/admin/password/reset?token={token}"
    minutes = int(reset.LIFETIME.total_seconds() // 60)
    mail_outbox.queue(
        session,
        runtime.cipher,
        to=[staff.email_of(runtime.cipher, user)],
        subject=t("reset.mail_subject"),
        text=t("reset.mail_text", link=link, minutes=minutes),
        key=f"password_reset:{token}",
        program_id=user.program_id,
        now=now,
    )


def _valid_user(session: Session, runtime: Runtime, token: str, now: datetime) -> StaffUser | None:
    account = reset.account_of(token)
    user = session.get(StaffUser, account) if account else None
    if user is None or user.disabled_at is not None:
        return None
    if not reset.check_token(
        runtime.cipher, token, kind="staff", password_hash=user.password_hash, now=now
    ):
        return None
    return user


@router.get("/admin/password/reset")
def reset_form(request: Request, runtime: RuntimeDep, token: str = "") -> Response:
    with transaction(runtime.sessions) as session:
        user = _valid_user(session, runtime, token, utcnow())
        language = user.language if user else None
    if user is None:
        error = translator(request)("reset.bad_link")
        return render(request, "admin/reset.html", status=400, token="", error=error)
    return render(request, "admin/reset.html", language=language, token=token, error=None)


@router.post("/admin/password/reset")
def reset_password(
    request: Request,
    runtime: RuntimeDep,
    token: FormText = "",
    password: FormText = "",
    repeat: FormText = "",
) -> Response:
    # The signed token is the proof, and the CSRF defence too: a forged post
    # would need the very link from the user's mailbox.
    now = utcnow()
    t = translator(request)
    with transaction(runtime.sessions) as session:
        user = _valid_user(session, runtime, token, now)
        if user is None:
            error = t("reset.bad_link")
            return render(request, "admin/reset.html", status=400, token="", error=error)
        if password != repeat:
            error = t("reset.mismatch")
            return render(request, "admin/reset.html", status=422, token=token, error=error)
        try:
            staff.set_password(session, runtime.cipher, user, password, now=now)
        except InvalidInput as invalid:
            return render(
                request, "admin/reset.html", status=422, token=token, error=invalid.detail
            )
        audit.record(
            session,
            Actor("staff", user.id),
            action="staff.password_reset",
            subject_kind="staff_user",
            subject_id=user.id,
            program_id=user.program_id,
            now=now,
        )
    return render(request, "admin/reset_done.html")
