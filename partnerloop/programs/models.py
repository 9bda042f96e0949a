from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    cookie_days: Mapped[int] = mapped_column(Integer)
    # Hosts a link may send shoppers to; a subdomain of a listed host counts.
    allowed_domains: Mapped[list[str]] = mapped_column(JSON)
    commission_type: Mapped[str] = mapped_column(String(16))  # percentage | fixed
    commission_rate: Mapped[str | None] = mapped_column(String(16))  # Decimal text, percent
    commission_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    hold_days: Mapped[int] = mapped_column(Integer)
    # Subscription renewals earn a commission again (R12) only when this is set.
    recurring_commission: Mapped[bool] = mapped_column(Boolean, default=False)
    # SHA-256 of the S2S postback token; unique so a token names exactly one program.
    postback_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Staff acting on this program must have two-factor on (R10).
    require_two_factor: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Affiliate signup on the portal: "manual" (staff approve) or "auto".
    signup_approval: Mapped[str] = mapped_column(
        String(8), default="manual", server_default="manual"
    )
    # Extra signup questions, a list of {"name", "label": {"en", "nl"}, "type"
    # (text|url|textarea|select|checkbox), "required", "options"}.
    signup_fields: Mapped[list[dict[str, object]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )
    # White label: what the portal and its e-mails look like (NULL: defaults).
    portal_name: Mapped[str | None] = mapped_column(String(200))
    logo_url: Mapped[str | None] = mapped_column(Text)
    brand_color: Mapped[str | None] = mapped_column(String(7))  # "#RRGGBB"
    accent_color: Mapped[str | None] = mapped_column(String(7))
    # Portal texts by key and language: {"welcome": {"en": "...", "nl": "..."}}.
    portal_texts: Mapped[dict[str, dict[str, str]]] = mapped_column(
        JSON, default=dict, server_default="{}"
    )
    mail_sender: Mapped[str | None] = mapped_column(String(320))  # "Brand <partners@brand.example>"


class ProgramDomain(Base):
    """A host name that belongs to one program: its portal ("partners.brand.example",
    the portal at /) or its tracking links ("go.brand.example/{code}"). The host is
    the key, so no host can name two programs."""

    __tablename__ = "program_domains"

    host: Mapped[str] = mapped_column(String(253), primary_key=True)  # lower case, no port
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(8))  # portal | tracking
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
