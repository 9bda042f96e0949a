"""Orders as the shops reported them: status, totals, lines and customer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from partnerloop.access.service import Scope
from partnerloop.core.errors import InvalidInput
from partnerloop.core.money import format_amount
from partnerloop.orders import service as orders
from partnerloop.orders.models import Conversion
from partnerloop.web.api.common import ERRORS
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep

router = APIRouter(tags=["orders"])


class CustomerOut(BaseModel):
    id: str
    external_id: str | None = Field(description="The shop's customer id.")
    email: str | None
    name: str | None
    affiliate_id: str | None = Field(description="The affiliate this customer is bound to.")


class OrderOut(BaseModel):
    id: str = Field(description="The conversion id.")
    program_id: str
    external_id: str = Field(description="The shop's order id (exact, also above 2^53).")
    number: str | None = Field(description="The customer-facing order number, e.g. #1001.")
    source: str = Field(description="api, postback, shopify, woocommerce, magento or stripe.")
    connector_id: str | None
    status: str = Field(description="pending (not paid, no commission yet), paid or cancelled.")
    amount: str = Field(
        description="The commission base: lines after discounts, without tax and shipping."
    )
    total: str = Field(description="What the customer paid, tax and shipping included.")
    tax: str | None
    shipping: str | None
    discount: str | None
    refunded_amount: str
    currency: str
    affiliate_id: str | None
    attribution: str
    click_id: str | None
    coupon: str | None
    subscription_id: str | None
    is_renewal: bool
    customer: CustomerOut | None
    items: list[dict[str, Any]]
    ordered_at: datetime
    updated_at: datetime | None = Field(
        description="The shop's updated_at of the newest state applied."
    )
    created_at: datetime


class OrderList(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


def _amount(value: int | None, currency: str) -> str | None:
    return None if value is None else format_amount(value, currency)


def order_out(row: Conversion, customer: orders.CustomerView | None) -> OrderOut:
    return OrderOut(
        id=row.id,
        program_id=row.program_id,
        external_id=row.order_id,
        number=row.order_number,
        source=row.source,
        connector_id=row.connector_id,
        status=row.status,
        amount=format_amount(row.amount_minor, row.currency),
        total=format_amount(
            row.total_minor if row.total_minor is not None else row.amount_minor, row.currency
        ),
        tax=_amount(row.tax_minor, row.currency),
        shipping=_amount(row.shipping_minor, row.currency),
        discount=_amount(row.discount_minor, row.currency),
        refunded_amount=format_amount(row.refunded_minor, row.currency),
        currency=row.currency,
        affiliate_id=row.affiliate_id,
        attribution=row.attribution,
        click_id=row.click_id,
        coupon=row.coupon_code,
        subscription_id=row.subscription_id,
        is_renewal=row.is_renewal,
        customer=CustomerOut(**vars(customer)) if customer else None,
        items=list(row.items or []),
        ordered_at=row.ordered_at,
        updated_at=row.source_updated_at,
        created_at=row.created_at,
    )


@router.get("/orders", response_model=OrderList, responses=ERRORS)
def list_orders(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    external_id: str | None = None,
    source: str | None = None,
    status: str | None = None,
) -> OrderList:
    """Orders, oldest first. `external_id` finds one shop order; with a key for all
    programs give `program_id` too, since order ids are only unique per program."""
    principal.require(Scope.read)
    if status is not None and status not in orders.ORDER_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(orders.ORDER_STATUSES)}.",
            code="invalid_status",
            field="status",
        )
    with runtime.sessions() as session:
        rows = orders.list_conversions(
            session,
            program_id=principal.visible_program(program_id),
            affiliate_id=None,
            created_from=None,
            created_to=None,
            after=page.after,
            limit=page.limit,
            order_id=external_id,
            source=source,
            status=status,
        )
        items = [
            order_out(row, orders.customer_view(session, runtime.cipher, row.customer_id))
            for row in rows
        ]
    return OrderList(items=items, **page.render(rows))
