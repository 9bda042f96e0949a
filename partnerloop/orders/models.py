from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class Customer(Base):
    """A shop's customer as far as attribution needs one: who referred them first."""

    __tablename__ = "customers"
    # A customer is found by e-mail (blind index) or by the shop's own id.
    __table_args__ = (
        UniqueConstraint("program_id", "email_index"),
        UniqueConstraint("program_id", "external_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    email_enc: Mapped[str | None] = mapped_column(Text)
    email_index: Mapped[str | None] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(255))
    name_enc: Mapped[str | None] = mapped_column(Text)
    # The shop's own updated_at of the newest customer record applied: an older one is ignored.
    source_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Lifetime binding: the first affiliate who brought this customer keeps them.
    affiliate_id: Mapped[str | None] = mapped_column(ForeignKey("affiliates.id"))
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Conversion(Base):
    """An order as partnerloop records it, with the outcome of its attribution."""

    __tablename__ = "conversions"
    # Idempotency: an order is recorded once per program, however often it is reported.
    __table_args__ = (
        UniqueConstraint("program_id", "order_id"),
        Index(None, "program_id", "created_at"),
        Index(None, "affiliate_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    order_id: Mapped[str] = mapped_column(String(255))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    click_id: Mapped[str | None] = mapped_column(String(32))
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    affiliate_id: Mapped[str | None] = mapped_column(ForeignKey("affiliates.id"))
    attribution: Mapped[str] = mapped_column(String(16))  # click | coupon | customer | none
    source: Mapped[str] = mapped_column(String(32))  # api | postback | <connector kind>
    # pending (placed, not paid: no commission yet) | paid | cancelled (commission reversed)
    status: Mapped[str] = mapped_column(String(16), default="paid")
    # What the shop reported beside the commission base (amount_minor: lines after
    # discounts, without tax and shipping); NULL where the source gives one amount only.
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    tax_minor: Mapped[int | None] = mapped_column(BigInteger)
    shipping_minor: Mapped[int | None] = mapped_column(BigInteger)
    discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    order_number: Mapped[str | None] = mapped_column(String(64))  # the customer-facing number
    connector_id: Mapped[str | None] = mapped_column(String(32), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    is_renewal: Mapped[bool] = mapped_column(Boolean, default=False)
    # The shop's updated_at of the newest snapshot applied: an older one changes nothing.
    source_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Refund(Base):
    """A refund as reported. It may arrive before its order: then conversion_id
    stays NULL until the order is recorded and the refund is applied."""

    __tablename__ = "refunds"
    # With the shop's refund id a retried report is recognised and not counted twice.
    __table_args__ = (
        UniqueConstraint("program_id", "refund_id"),
        Index(None, "program_id", "order_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    order_id: Mapped[str] = mapped_column(String(255))
    refund_id: Mapped[str | None] = mapped_column(String(255))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    conversion_id: Mapped[str | None] = mapped_column(ForeignKey("conversions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Subscription(Base):
    """A shop subscription (Stripe): renewals of it are orders of their own, and earn
    a recurring commission while it runs, if the program pays them."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("program_id", "subscription_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    subscription_id: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(16))  # active | ended
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
