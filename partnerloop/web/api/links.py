from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.programs import domains
from partnerloop.tracking import service as tracking
from partnerloop.tracking.models import Coupon, Link
from partnerloop.web.api.common import ERRORS, audit
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep

router = APIRouter(tags=["links and coupons"])

SUB_DOC = "Sub-id recorded with every click of this link (a click's own ?subN= wins)."


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    affiliate_id: str
    destination_url: str = Field(
        description="Any URL on the program's allowed domains (a deep link)."
    )
    code: str | None = Field(default=None, description="Custom short code; random if left out.")
    sub1: str | None = Field(default=None, description=SUB_DOC)
    sub2: str | None = Field(default=None, description=SUB_DOC)
    sub3: str | None = Field(default=None, description=SUB_DOC)
    sub4: str | None = Field(default=None, description=SUB_DOC)
    sub5: str | None = Field(default=None, description=SUB_DOC)


class LinkOut(BaseModel):
    id: str
    program_id: str
    affiliate_id: str
    code: str
    url: str = Field(
        description="The tracking URL to share: <public URL>/r/{code}, or "
        "https://<the program's tracking domain>/{code} when it has one."
    )
    destination_url: str
    subs: dict[str, str]
    disabled: bool
    created_at: datetime


class LinkList(BaseModel):
    items: list[LinkOut]
    next_cursor: str | None


class CouponIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    affiliate_id: str
    code: str = Field(description="The code shoppers type at checkout (case-insensitive).")


class CouponOut(BaseModel):
    id: str
    program_id: str
    affiliate_id: str
    code: str
    disabled: bool
    created_at: datetime


class CouponList(BaseModel):
    items: list[CouponOut]
    next_cursor: str | None


def link_out(link: Link, *, prefix: str) -> LinkOut:
    """prefix: what the code is appended to (programs.domains.tracking_prefixes)."""
    return LinkOut(
        id=link.id,
        program_id=link.program_id,
        affiliate_id=link.affiliate_id,
        code=link.code,
        url=prefix + link.code,
        destination_url=link.destination_url,
        subs={name: value for name in tracking.SUB_IDS if (value := getattr(link, name))},
        disabled=link.disabled_at is not None,
        created_at=link.created_at,
    )


def links_out(session: Session, links: list[Link], *, public_url: str) -> list[LinkOut]:
    prefixes = domains.tracking_prefixes(
        session, {link.program_id for link in links}, public_url=public_url
    )
    return [link_out(link, prefix=prefixes[link.program_id]) for link in links]


def coupon_out(coupon: Coupon) -> CouponOut:
    return CouponOut(
        id=coupon.id,
        program_id=coupon.program_id,
        affiliate_id=coupon.affiliate_id,
        code=coupon.code,
        disabled=coupon.disabled_at is not None,
        created_at=coupon.created_at,
    )


@router.post("/links", status_code=201, response_model=LinkOut, responses=ERRORS)
def create_link(body: LinkIn, principal: PrincipalDep, runtime: RuntimeDep) -> LinkOut:
    """Create a tracking link for an approved affiliate."""
    principal.require(Scope.write, Permission.MANAGE_AFFILIATES)
    principal.require_program(body.program_id)
    with transaction(runtime.sessions) as session:
        link = tracking.create_link(
            session,
            program_id=body.program_id,
            affiliate_id=body.affiliate_id,
            destination_url=body.destination_url,
            code=body.code,
            subs=tracking.check_sub_ids({name: getattr(body, name) for name in tracking.SUB_IDS}),
            now=utcnow(),
        )
        audit(
            session,
            principal,
            action="link.created",
            subject_kind="link",
            subject_id=link.id,
            program_id=link.program_id,
            details={"affiliate_id": link.affiliate_id},
        )
        return links_out(session, [link], public_url=runtime.settings.public_url)[0]


@router.get("/links", response_model=LinkList, responses=ERRORS)
def list_links(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    page: PageDep,
    program_id: str | None = None,
    affiliate_id: str | None = None,
) -> LinkList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = tracking.list_links(
            session,
            program_id=principal.visible_program(program_id),
            affiliate_id=affiliate_id,
            after=page.after,
            limit=page.limit,
        )
        return LinkList(
            items=links_out(session, rows, public_url=runtime.settings.public_url),
            **page.render(rows),
        )


def _set_disabled(
    link_id: str, disabled: bool, principal: PrincipalDep, runtime: RuntimeDep
) -> LinkOut:
    principal.require(Scope.write, Permission.MANAGE_AFFILIATES)
    with transaction(runtime.sessions) as session:
        link = tracking.set_link_disabled(
            session,
            link_id=link_id,
            program_id=principal.program_id,
            disabled=disabled,
            now=utcnow(),
        )
        audit(
            session,
            principal,
            action="link.disabled" if disabled else "link.enabled",
            subject_kind="link",
            subject_id=link.id,
            program_id=link.program_id,
        )
        return links_out(session, [link], public_url=runtime.settings.public_url)[0]


@router.post("/links/{link_id}/disable", response_model=LinkOut, responses=ERRORS)
def disable_link(link_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> LinkOut:
    """Stop a link: its URL answers 404 (within a few seconds: redirect servers cache links)."""
    return _set_disabled(link_id, True, principal, runtime)


@router.post("/links/{link_id}/enable", response_model=LinkOut, responses=ERRORS)
def enable_link(link_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> LinkOut:
    return _set_disabled(link_id, False, principal, runtime)


@router.post("/coupons", status_code=201, response_model=CouponOut, responses=ERRORS)
def create_coupon(body: CouponIn, principal: PrincipalDep, runtime: RuntimeDep) -> CouponOut:
    """Bind a coupon code to an affiliate: orders using it are theirs (R12: offline, podcasts, social)."""
    principal.require(Scope.write, Permission.MANAGE_AFFILIATES)
    principal.require_program(body.program_id)
    with transaction(runtime.sessions) as session:
        coupon = tracking.create_coupon(
            session,
            program_id=body.program_id,
            affiliate_id=body.affiliate_id,
            code=body.code,
            now=utcnow(),
        )
        audit(
            session,
            principal,
            action="coupon.created",
            subject_kind="coupon",
            subject_id=coupon.id,
            program_id=coupon.program_id,
            details={"affiliate_id": coupon.affiliate_id},
        )
        return coupon_out(coupon)


@router.get("/coupons", response_model=CouponList, responses=ERRORS)
def list_coupons(
    principal: PrincipalDep, runtime: RuntimeDep, page: PageDep, program_id: str | None = None
) -> CouponList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = tracking.list_coupons(
            session,
            program_id=principal.visible_program(program_id),
            after=page.after,
            limit=page.limit,
        )
        return CouponList(items=[coupon_out(r) for r in rows], **page.render(rows))
