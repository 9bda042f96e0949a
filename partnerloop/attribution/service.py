from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from partnerloop.attribution.rules import Attribution, ClickEvidence, decide
from partnerloop.programs.models import Program
from partnerloop.tracking import service as tracking


def attribute(
    session: Session,
    *,
    program: Program,
    click_id: str | None,
    coupon_code: str | None,
    customer_affiliate_id: str | None,
    ordered_at: datetime,
) -> Attribution:
    evidence = None
    if click_id:
        click = tracking.get_click(session, click_id)
        # A click id from another program is no evidence for this one.
        if click is not None and click.program_id == program.id:
            evidence = ClickEvidence(
                click_id=click.id, affiliate_id=click.affiliate_id, clicked_at=click.created_at
            )
    coupon_affiliate_id = None
    if coupon_code:
        coupon = tracking.find_coupon(session, program_id=program.id, code=coupon_code)
        coupon_affiliate_id = coupon.affiliate_id if coupon is not None else None
    return decide(
        click=evidence,
        coupon_affiliate_id=coupon_affiliate_id,
        customer_affiliate_id=customer_affiliate_id,
        ordered_at=ordered_at,
        cookie_days=program.cookie_days,
    )
