from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.commissions import service as commissions
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.core.money import format_amount
from partnerloop.orders import service as orders
from partnerloop.orders.models import Conversion, Refund
from partnerloop.web.api.commissions import CommissionOut, commission_out
from partnerloop.web.api.common import (
    AMOUNT_DOC,
    CURRENCY_DOC,
    ERRORS,
    audit,
    parse_moment,
    parse_money,
)
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep, wake_worker

router = APIRouter(tags=["conversions and refunds"])

MAX_ITEMS = 500


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str | None = None
    name: str | None = None
    category: str | None = None
    quantity: int = Field(1, ge=1)
    price: str = Field(description="Unit price. " + AMOUNT_DOC)


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    order_id: str = Field(
        description="The shop's order id; reporting it again is safe (idempotent)."
    )
    amount: str = Field(description="Order amount the commission is based on. " + AMOUNT_DOC)
    currency: str = Field(description=CURRENCY_DOC + " Must be the program's currency.")
    click_id: str | None = Field(
        default=None, description="The plclid the shop got on the landing URL."
    )
    coupon: str | None = Field(default=None, description="Coupon code used at checkout.")
    customer_email: str | None = Field(
        default=None, description="Stored encrypted; used for lifetime attribution."
    )
    customer_id: str | None = Field(
        default=None, description="The shop's customer id (instead of or with e-mail)."
    )
    items: list[ItemIn] | None = Field(default=None, max_length=MAX_ITEMS)
    ordered_at: datetime | None = Field(
        default=None, description="When the order was placed (default: now)."
    )


class ConversionOut(BaseModel):
    id: str
    program_id: str
    order_id: str
    amount: str
    refunded_amount: str
    currency: str
    affiliate_id: str | None
    attribution: str = Field(description="click, coupon, customer or none.")
    click_id: str | None
    coupon: str | None
    source: str
    ordered_at: datetime
    created_at: datetime
    commissions: list[CommissionOut]


class ConversionList(BaseModel):
    items: list[ConversionOut]
    next_cursor: str | None


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    order_id: str
    amount: str = Field(description="Amount refunded now (partial or full). " + AMOUNT_DOC)
    currency: str = Field(description=CURRENCY_DOC)
    refund_id: str | None = Field(
        default=None, description="The shop's refund id. Give it and retrying the call is safe."
    )


class RefundOut(BaseModel):
    id: str
    program_id: str
    order_id: str
    refund_id: str | None
    amount: str
    currency: str
    applied: bool = Field(
        description="False while the order is not known yet; applied when it arrives."
    )
    conversion_id: str | None
    created_at: datetime


def conversion_out(conversion: Conversion, commission_rows: list[Any]) -> ConversionOut:
    return ConversionOut(
        id=conversion.id,
        program_id=conversion.program_id,
        order_id=conversion.order_id,
        amount=format_amount(conversion.amount_minor, conversion.currency),
        refunded_amount=format_amount(conversion.refunded_minor, conversion.currency),
        currency=conversion.currency,
        affiliate_id=conversion.affiliate_id,
        attribution=conversion.attribution,
        click_id=conversion.click_id,
        coupon=conversion.coupon_code,
        source=conversion.source,
        ordered_at=conversion.ordered_at,
        created_at=conversion.created_at,
        commissions=[commission_out(c) for c in commission_rows],
    )


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.id,
        program_id=refund.program_id,
        order_id=refund.order_id,
        refund_id=refund.refund_id,
        amount=format_amount(refund.amount_minor, refund.currency),
        currency=refund.currency,
        applied=refund.applied_at is not None,
        conversion_id=refund.conversion_id,
        created_at=refund.created_at,
    )


def _items(body: ConversionIn) -> list[dict[str, Any]] | None:
    if body.items is None:
        return None
    items = []
    for position, item in enumerate(body.items):
        price_minor = parse_money(
            item.price, body.currency, amount_field=f"items[{position}].price"
        )
        items.append({**item.model_dump(exclude={"price"}), "price_minor": price_minor})
    return items


@router.post(
    "/conversions",
    status_code=201,
    response_model=ConversionOut,
    responses={
        **ERRORS,
        200: {"model": ConversionOut, "description": "This order was already recorded"},
    },
)
def record_conversion(
    body: ConversionIn,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> ConversionOut:
    """Report an order. Attributes it (click id, else coupon, else a returning
    customer) and creates the commission. The same order again answers 200 with
    the conversion already recorded and never creates a second commission."""
    principal.require(Scope.write, Permission.REVIEW_COMMISSIONS)
    principal.require_program(body.program_id)
    amount_minor = parse_money(body.amount, body.currency)
    if body.ordered_at is not None and body.ordered_at.tzinfo is None:
        raise InvalidInput(
            "ordered_at needs a time zone (e.g. ...Z).", code="invalid_date", field="ordered_at"
        )
    with transaction(runtime.sessions) as session:
        recorded = orders.record_conversion(
            session,
            runtime.cipher,
            orders.OrderInput(
                program_id=body.program_id,
                order_id=body.order_id,
                amount_minor=amount_minor,
                currency=body.currency,
                source="api",
                click_id=body.click_id,
                coupon_code=body.coupon,
                customer_email=body.customer_email,
                customer_external_id=body.customer_id,
                items=_items(body),
                ordered_at=body.ordered_at,
            ),
            now=utcnow(),
        )
        if principal.role is not None and recorded.created:  # a person entered it by hand
            audit(
                session,
                principal,
                action="conversion.recorded",
                subject_kind="conversion",
                subject_id=recorded.conversion.id,
                program_id=body.program_id,
            )
        out = conversion_out(recorded.conversion, recorded.commissions)
    if not recorded.created:
        response.status_code = 200
    wake_worker(request)
    return out


@router.get("/conversions", response_model=ConversionList, responses=ERRORS)
def list_conversions(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    affiliate_id: str | None = None,
    from_: Annotated[
        str | None, Query(alias="from", description="Recorded on/after (date or date-time).")
    ] = None,
    to: Annotated[
        str | None, Query(description="Recorded before/through (date: inclusive).")
    ] = None,
) -> ConversionList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = orders.list_conversions(
            session,
            program_id=principal.visible_program(program_id),
            affiliate_id=affiliate_id,
            created_from=parse_moment(from_, field="from"),
            created_to=parse_moment(to, field="to", end=True),
            after=page.after,
            limit=page.limit,
        )
        items = [conversion_out(r, commissions.list_for_conversion(session, r.id)) for r in rows]
    return ConversionList(items=items, **page.render(rows))


@router.get("/conversions/{conversion_id}", response_model=ConversionOut, responses=ERRORS)
def get_conversion(
    conversion_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> ConversionOut:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        row = orders.get_conversion_or_raise(
            session, conversion_id, program_id=principal.program_id
        )
        return conversion_out(row, commissions.list_for_conversion(session, row.id))


@router.post(
    "/refunds",
    status_code=201,
    response_model=RefundOut,
    responses={
        **ERRORS,
        200: {"model": RefundOut, "description": "This refund_id was already recorded"},
    },
)
def record_refund(
    body: RefundIn,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> RefundOut:
    """Report a full or partial refund by order id. Commissions shrink in proportion
    (a full refund reverses them). A refund for an order not reported yet is kept
    and applied when the order arrives."""
    principal.require(Scope.write, Permission.REVIEW_COMMISSIONS)
    principal.require_program(body.program_id)
    amount_minor = parse_money(body.amount, body.currency)
    with transaction(runtime.sessions) as session:
        result = orders.record_refund(
            session,
            runtime.cipher,
            program_id=body.program_id,
            order_id=body.order_id,
            amount_minor=amount_minor,
            currency=body.currency,
            refund_id=body.refund_id,
            now=utcnow(),
        )
        if principal.role is not None and result.created:
            audit(
                session,
                principal,
                action="refund.recorded",
                subject_kind="refund",
                subject_id=result.refund.id,
                program_id=body.program_id,
            )
        out = refund_out(result.refund)
    if not result.created:
        response.status_code = 200
    wake_worker(request)
    return out
