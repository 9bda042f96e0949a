"""Forgotten portal passwords: {base}/password/forgot e-mails a reset link,
{base}/password/reset?token=... sets a new password.

Like the staff reset (web/admin/password.py): the same answer whether the
address has an account in this program or not, at most 5 links per account
(20 per address) in 15 minutes, a signed link that works for an hour and once
(partnerloop.access.reset, kind "affiliate"), sent through the outbox. The
e-mail comes from the program's sender (white label) and links to the portal
where it was asked for: the program's own domain, or /portal/{program}. An
affiliate staff signed up, who has no password yet, sets one this way: the
link goes to their own mailbox, which is the proof.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partnerloop.access import reset, throttle
from partnerloop.affiliates import portal as affiliate_portal
from partnerloop.affiliates import service as affiliates
from partnerloop.affiliates.models import Affiliate
from partnerloop.audit import service as audit
from partnerloop.audit.service import Actor
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.integrations import mail_outbox
from partnerloop.programs import domains
from partnerloop.runtime import Runtime
from partnerloop.web.deps import RuntimeDep, wake_worker
from partnerloop.web.pages import translator
from partnerloop.web.portal.auth import form_is_ours, pre_login_page
from partnerloop.web.portal.context import Portal, client_ip, open_portal, page

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]
KIND = "affiliate"


def _forgot_page(
    request: Request,
    runtime: Runtime,
    portal: Portal,
    *,
    status: int = 200,
    sent: bool,
    error: str | None,
) -> Response:
    return pre_login_page(
        request, runtime, portal, "portal/forgot.html", status=status, sent=sent, error=error
    )


@router.get("/portal/{program_id}/password/forgot")
def forgot_form(program_id: str, request: Request, runtime: RuntimeDep) -> Response:
    portal = open_portal(request, runtime, program_id)
    return _forgot_page(request, runtime, portal, sent=False, error=None)


@router.post("/portal/{program_id}/password/forgot")
def forgot(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    email: FormText = "",
    csrf: FormText = "",
) -> Response:
    portal = open_portal(request, runtime, program_id)
    if not form_is_ours(request, csrf):
        error = translator(request, preferred=portal.language)("portal.stale_form")
        return _forgot_page(request, runtime, portal, status=403, sent=False, error=error)
    now = utcnow()
    # Counted apart from logins, with their limits (5 per account, 20 per address).
    keys = [
        key.replace("account:", "reset:account:").replace("address:", "address:reset:")
        for key in throttle.keys_for(
            affiliate_portal.email_index(runtime.cipher, email), client_ip(request, runtime)
        )
    ]
    with transaction(runtime.sessions) as session:
        if throttle.wait_seconds(session, keys, now=now) <= 0:
            throttle.record_failure(session, keys, now=now)
            affiliate = affiliates.find_by_email(session, runtime.cipher, email)
            if affiliate is not None and affiliate_portal.member(
                session, program_id=program_id, affiliate_id=affiliate.id
            ):
                _queue_mail(request, runtime, session, portal, affiliate, now=now)
    wake_worker(request)
    # The same answer in every case: sent, unknown address, another program's, throttled.
    return _forgot_page(request, runtime, portal, sent=True, error=None)


def _portal_url(runtime: Runtime, session: Session, portal: Portal, program_id: str) -> str:
    """Where the link in the e-mail points: the portal the affiliate asked on."""
    if portal.base:
        return f"{runtime.settings.public_url}{portal.base}"
    host = domains.domains_of(session, program_id).get("portal")
    scheme = "https" if runtime.settings.public_url.startswith("https://") else "http"
    return f"{scheme}://{host}" if host else f"{runtime.settings.public_url}/portal/{program_id}"


def _queue_mail(
    request: Request,
    runtime: Runtime,
    session: Session,
    portal: Portal,
    affiliate: Affiliate,
    *,
    now: datetime,
) -> None:
    program_id = portal.program.id
    token = reset.make_token(
        runtime.cipher,
        kind=KIND,
        account_id=affiliate.id,
        password_hash=affiliate.password_hash or "",
        now=now,
    )
    t = translator(request, preferred=affiliate.language)
    link = f"{_portal_url(runtime, session, portal, program_id)}/password/reset?token={token}"
    brand = portal.program.brand
    mail_outbox.queue(
        session,
        runtime.cipher,
        to=[affiliates.view(session, runtime.cipher, affiliate).email],
        subject=t("portal_reset.mail_subject", portal=brand.portal_name),
        text=t(
            "portal_reset.mail_text",
            portal=brand.portal_name,
            link=link,
            minutes=int(reset.LIFETIME.total_seconds() // 60),
        ),
        sender=brand.mail_sender,
        key=f"portal_password_reset:{token}",
        program_id=program_id,
        now=now,
    )


def _valid(
    session: Session, runtime: Runtime, program_id: str, token: str, now: datetime
) -> Affiliate | None:
    account = reset.account_of(token)
    affiliate = (
        affiliate_portal.member(session, program_id=program_id, affiliate_id=account)
        if account
        else None
    )
    if affiliate is None:
        return None
    if not reset.check_token(
        runtime.cipher, token, kind=KIND, password_hash=affiliate.password_hash or "", now=now
    ):
        return None
    return affiliate


@router.get("/portal/{program_id}/password/reset")
def reset_form(program_id: str, request: Request, runtime: RuntimeDep, token: str = "") -> Response:
    portal = open_portal(request, runtime, program_id)
    with transaction(runtime.sessions) as session:
        valid = _valid(session, runtime, program_id, token, utcnow()) is not None
    if not valid:
        error = translator(request, preferred=portal.language)("portal_reset.bad_link")
        return page(request, portal, "portal/reset.html", status=400, token="", error=error)
    return page(request, portal, "portal/reset.html", token=token, error=None)


@router.post("/portal/{program_id}/password/reset")
def reset_password(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    token: FormText = "",
    password: FormText = "",
    repeat: FormText = "",
) -> Response:
    # The signed token is the proof, and the CSRF defence too.
    portal = open_portal(request, runtime, program_id)
    t = translator(request, preferred=portal.language)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        affiliate = _valid(session, runtime, program_id, token, now)
        if affiliate is None:
            error = t("portal_reset.bad_link")
            return page(request, portal, "portal/reset.html", status=400, token="", error=error)
        if password != repeat:
            error = t("portal_reset.mismatch")
            return page(request, portal, "portal/reset.html", status=422, token=token, error=error)
        problem = affiliate_portal.set_password(
            session, runtime.cipher, affiliate, password, now=now
        )
        if problem is not None:
            error = t(f"portal.error.{problem.code}")
            return page(request, portal, "portal/reset.html", status=422, token=token, error=error)
        audit.record(
            session,
            Actor("affiliate", affiliate.id),
            action="affiliate.password_reset",
            subject_kind="affiliate",
            subject_id=affiliate.id,
            program_id=program_id,
            now=now,
        )
    return page(request, portal, "portal/reset_done.html")
