"""Payout details ({base}/payouts): how the affiliate is paid (bank transfer
with an IBAN, or PayPal), stored encrypted and only ever shown masked; and the
commissions paid so far."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from partnerloop.access.portal_sessions import check_csrf_token
from partnerloop.affiliates import portal as affiliate_portal
from partnerloop.analytics import service as analytics
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.runtime import Runtime
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.portal import queries
from partnerloop.web.portal.context import (
    Portal,
    message,
    open_portal,
    page,
    redirect,
    status_page,
)

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]


def _payouts_page(
    request: Request,
    runtime: Runtime,
    portal: Portal,
    *,
    status: int = 200,
    error: str | None = None,
    error_field: str | None = None,
    values: dict[str, str] | None = None,
    saved: bool = False,
) -> Response:
    viewer = portal.signed_in()
    with runtime.sessions() as session:
        affiliate = affiliate_portal.member(
            session, program_id=portal.program.id, affiliate_id=viewer.affiliate_id
        )
        details = (
            affiliate_portal.payout_details_of(runtime.cipher, affiliate) if affiliate else None
        )
        paid = queries.paid_commissions(
            session, program_id=portal.program.id, affiliate_id=viewer.affiliate_id
        )
        paid_total = analytics.stats(
            session,
            program_id=portal.program.id,
            affiliate_id=viewer.affiliate_id,
            day_from=None,
            day_to=None,
        ).commissions_minor["paid"]
    return page(
        request,
        portal,
        "portal/payouts.html",
        status=status,
        current="/payouts",
        details=details,
        masked=details.masked() if details else None,
        paid=paid,
        paid_total=paid_total,
        error=error,
        error_field=error_field,
        values=values or {},
        saved=saved,
    )


@router.get("/portal/{program_id}/payouts")
def payouts(program_id: str, request: Request, runtime: RuntimeDep, saved: str = "") -> Response:
    portal = open_portal(request, runtime, program_id)
    if not portal.signed_in().approved:
        return status_page(request, portal, status=403, current="/payouts")
    return _payouts_page(request, runtime, portal, saved=saved == "1")


@router.post("/portal/{program_id}/payouts")
def save_payout_details(
    program_id: str,
    request: Request,
    runtime: RuntimeDep,
    method: FormText = "",
    account_holder: FormText = "",
    iban: FormText = "",
    paypal_email: FormText = "",
    csrf: FormText = "",
) -> Response:
    portal = open_portal(request, runtime, program_id)
    viewer = portal.signed_in()
    check_csrf_token(viewer.csrf, csrf)
    if not viewer.approved:
        return status_page(request, portal, status=403, current="/payouts")
    try:
        details = affiliate_portal.check_payout_details(
            method=method, account_holder=account_holder, iban=iban, paypal_email=paypal_email
        )
    except InvalidInput as error:
        # The form comes back with what was typed (it is the affiliate's own),
        # and the field at fault named.
        values = {
            "method": method,
            "account_holder": account_holder,
            "iban": iban,
            "paypal_email": paypal_email,
        }
        return _payouts_page(
            request,
            runtime,
            portal,
            status=422,
            error=message(request, portal, error),
            error_field=error.field,
            values=values,
        )
    with transaction(runtime.sessions) as session:
        affiliate = affiliate_portal.member(
            session, program_id=program_id, affiliate_id=viewer.affiliate_id
        )
        if affiliate is None:
            return redirect(f"{portal.base}/login")
        affiliate_portal.set_payout_details(
            session,
            runtime.cipher,
            affiliate=affiliate,
            details=details,
            program_id=program_id,
            now=utcnow(),
        )
    return redirect(f"{portal.base}/payouts?saved=1")
