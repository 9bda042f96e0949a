"""The signed-in staff member's own account at /admin/account: language,
password, and two-factor setup (a QR code for the authenticator app, then a
code to confirm it). These pages stay open to a user who must still set up
two-factor because their program requires it."""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from partnerloop.access import passwords, totp
from partnerloop.access import staff as staff_accounts
from partnerloop.access.models import StaffUser
from partnerloop.audit import service as audit
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.runtime import Runtime
from partnerloop.web.admin.guard import Staff, StaffDep
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.i18n import LANGUAGES
from partnerloop.web.pages import render, translator

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]
ISSUER = "partnerloop"


def _page(
    request: Request,
    runtime: Runtime,
    staff: Staff,
    *,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    return render(
        request,
        "admin/account.html",
        status=status,
        language=staff.language,
        staff=staff,
        program=None,
        languages=LANGUAGES,
        notice=notice,
        error=error,
    )


@router.get("/admin/account")
def account(request: Request, runtime: RuntimeDep, staff: StaffDep, saved: str = "") -> Response:
    known = ("language", "two_factor")
    t = translator(request, preferred=staff.language)
    notice = t(f"account.saved_{saved}") if saved in known else None
    return _page(request, runtime, staff, notice=notice)


@router.post("/admin/account/language")
def set_language(
    request: Request,
    runtime: RuntimeDep,
    staff: StaffDep,
    language: FormText = "",
    csrf: FormText = "",
) -> Response:
    staff.check_csrf(csrf)
    if language not in ("", *LANGUAGES):
        raise InvalidInput(
            f"Unknown language {language!r}.", code="invalid_language", field="language"
        )
    with transaction(runtime.sessions) as session:
        session.get_one(StaffUser, staff.user_id).language = language or None
    return RedirectResponse("/admin/account?saved=language", status_code=303)


@router.post("/admin/account/password")
def change_password(
    request: Request,
    runtime: RuntimeDep,
    staff: StaffDep,
    current: FormText = "",
    password: FormText = "",
    repeat: FormText = "",
    csrf: FormText = "",
) -> Response:
    staff.check_csrf(csrf)
    t = translator(request, preferred=staff.language)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        user = session.get_one(StaffUser, staff.user_id)
        if not passwords.verify(user.password_hash, current):
            return _page(request, runtime, staff, status=422, error=t("account.wrong_password"))
        if password != repeat:
            return _page(request, runtime, staff, status=422, error=t("reset.mismatch"))
        try:
            staff_accounts.set_password(session, runtime.cipher, user, password, now=now)
        except InvalidInput as invalid:
            return _page(request, runtime, staff, status=422, error=invalid.detail)
        audit.record(
            session,
            staff.actor,
            action="staff.password_changed",
            subject_kind="staff_user",
            subject_id=user.id,
            program_id=user.program_id,
            now=now,
        )
    # Every session ended with the change, this one too: sign in with the new password.
    return RedirectResponse("/admin/login", status_code=303)


def _qr_svg(uri: str) -> str:
    return str(segno.make(uri, error="m").svg_inline(scale=5, title="QR"))


@router.get("/admin/account/two-factor")
def two_factor(
    request: Request, runtime: RuntimeDep, staff: StaffDep, required: str = "", error: str = ""
) -> Response:
    with transaction(runtime.sessions) as session:
        user = session.get_one(StaffUser, staff.user_id)
        pending_uri = None
        secret = None
        if not staff_accounts.has_totp(user) and user.totp_secret_enc is not None:
            secret = runtime.cipher.decrypt(user.totp_secret_enc, field=staff_accounts.TOTP_FIELD)
            pending_uri = totp.provisioning_uri(secret, account=staff.email, issuer=ISSUER)
    t = translator(request, preferred=staff.language)
    return render(
        request,
        "admin/two_factor.html",
        status=422 if error else 200,
        language=staff.language,
        staff=staff,
        program=None,
        required=bool(required),
        pending=pending_uri is not None,
        qr=_qr_svg(pending_uri) if pending_uri else None,
        secret=secret,
        error=t("code.failed") if error else None,
    )


@router.post("/admin/account/two-factor/start")
def start_two_factor(
    request: Request, runtime: RuntimeDep, staff: StaffDep, csrf: FormText = ""
) -> Response:
    staff.check_csrf(csrf)
    with transaction(runtime.sessions) as session:
        user = session.get_one(StaffUser, staff.user_id)
        staff_accounts.begin_totp(runtime.cipher, user, issuer=ISSUER)
    return RedirectResponse("/admin/account/two-factor", status_code=303)


@router.post("/admin/account/two-factor/confirm")
def confirm_two_factor(
    request: Request, runtime: RuntimeDep, staff: StaffDep, code: FormText = "", csrf: FormText = ""
) -> Response:
    staff.check_csrf(csrf)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        user = session.get_one(StaffUser, staff.user_id)
        confirmed = staff_accounts.confirm_totp(runtime.cipher, user, code, now=now)
        if confirmed:
            audit.record(
                session,
                staff.actor,
                action="staff.two_factor_enabled",
                subject_kind="staff_user",
                subject_id=user.id,
                program_id=user.program_id,
                now=now,
            )
    if not confirmed:
        return RedirectResponse("/admin/account/two-factor?error=1", status_code=303)
    return RedirectResponse("/admin/account?saved=two_factor", status_code=303)
