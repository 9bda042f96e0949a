"""Links, coupons and clicks."""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from partnerloop.affiliates import service as affiliates
from partnerloop.affiliates.models import Affiliate
from partnerloop.analytics import service as analytics
from partnerloop.core.bulk import BulkInsert, Statement
from partnerloop.core.clock import day_of
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import insert_if_absent
from partnerloop.core.errors import Conflict, InvalidInput, NotFound
from partnerloop.core.ids import has_kind, new_id
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program
from partnerloop.tracking.destinations import allowed_destination
from partnerloop.tracking.models import Click, Coupon, Link
from partnerloop.tracking.useragent import classify

# No 0/O, 1/l/I: codes are read aloud and typed from print.
_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_CODE_LENGTH = 7  # 55^7 = 1.5e12 codes: a collision is rare, and retried when it happens
_CUSTOM_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")
_COUPON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$")
SUB_IDS = ("sub1", "sub2", "sub3", "sub4", "sub5")
MAX_SUB_LENGTH = 255
IP_FIELD = "click.ip"


def _affiliate_ready(session: Session, *, program_id: str, affiliate_id: str) -> None:
    affiliate = affiliates.get_or_raise(session, affiliate_id, program_id=program_id)
    if affiliate.status != "approved":
        raise Conflict(
            f"The affiliate is {affiliate.status}; approve them before giving them links or coupons.",
            code="affiliate_not_approved",
            field="affiliate_id",
        )


def check_sub_ids(subs: dict[str, str | None]) -> dict[str, str | None]:
    for name, value in subs.items():
        if value is not None and len(value) > MAX_SUB_LENGTH:
            raise InvalidInput(
                f"{name} is longer than {MAX_SUB_LENGTH} characters.",
                code="invalid_sub_id",
                field=name,
            )
    return subs


def create_link(
    session: Session,
    *,
    program_id: str,
    affiliate_id: str,
    destination_url: str,
    code: str | None = None,
    subs: dict[str, str | None] | None = None,
    now: datetime,
) -> Link:
    program = programs.get_or_raise(session, program_id)
    _affiliate_ready(session, program_id=program_id, affiliate_id=affiliate_id)
    if allowed_destination(destination_url, program.allowed_domains) is None:
        raise InvalidInput(
            "destination_url must be an http(s) URL on one of the program's allowed domains "
            f"({', '.join(program.allowed_domains)}).",
            code="destination_not_allowed",
            field="destination_url",
        )
    presets = check_sub_ids(subs or {})
    if code is not None and not _CUSTOM_CODE_RE.match(code):
        raise InvalidInput(
            "A custom code has 3 to 64 letters, digits, '-' or '_', starting with a letter or digit.",
            code="invalid_code",
            field="code",
        )
    for attempt in range(8):
        candidate = code or "".join(
            secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH + attempt // 3)
        )
        link_id = new_id("link")
        inserted = insert_if_absent(
            session,
            Link.__table__,  # type: ignore[arg-type]
            {
                "id": link_id,
                "program_id": program_id,
                "affiliate_id": affiliate_id,
                "code": candidate,
                "destination_url": destination_url,
                "created_at": now,
                **{name: presets.get(name) for name in SUB_IDS},
            },
            conflict_columns=("code",),
        )
        if inserted:
            return session.get_one(Link, link_id)
        if code is not None:
            raise Conflict(f"The code {code!r} is taken.", code="code_taken", field="code")
    raise Conflict("Could not find a free link code; try again.", code="code_space_exhausted")


def get_link_or_raise(session: Session, link_id: str, *, program_id: str | None) -> Link:
    link = session.get(Link, link_id)
    if link is None or (program_id is not None and link.program_id != program_id):
        raise NotFound(f"No link {link_id}.", code="link_not_found", field="link_id")
    return link


def set_link_disabled(
    session: Session, *, link_id: str, program_id: str | None, disabled: bool, now: datetime
) -> Link:
    link = get_link_or_raise(session, link_id, program_id=program_id)
    if disabled and link.disabled_at is None:
        link.disabled_at = now
    elif not disabled:
        link.disabled_at = None
    return link


def list_links(
    session: Session,
    *,
    program_id: str | None,
    affiliate_id: str | None,
    after: str | None,
    limit: int,
) -> list[Link]:
    query = select(Link).order_by(Link.id).limit(limit)
    if program_id is not None:
        query = query.where(Link.program_id == program_id)
    if affiliate_id is not None:
        query = query.where(Link.affiliate_id == affiliate_id)
    if after is not None:
        query = query.where(Link.id > after)
    return list(session.scalars(query))


def normalise_coupon(code: str) -> str:
    return code.strip().upper()


def create_coupon(
    session: Session, *, program_id: str, affiliate_id: str, code: str, now: datetime
) -> Coupon:
    programs.get_or_raise(session, program_id)
    _affiliate_ready(session, program_id=program_id, affiliate_id=affiliate_id)
    if not _COUPON_RE.match(code.strip()):
        raise InvalidInput(
            "A coupon code has 2 to 64 letters, digits, '-' or '_'.",
            code="invalid_coupon",
            field="code",
        )
    normalised = normalise_coupon(code)
    coupon_id = new_id("coupon")
    inserted = insert_if_absent(
        session,
        Coupon.__table__,  # type: ignore[arg-type]
        {
            "id": coupon_id,
            "program_id": program_id,
            "affiliate_id": affiliate_id,
            "code": normalised,
            "created_at": now,
        },
        conflict_columns=("program_id", "code"),
    )
    if not inserted:
        raise Conflict(
            f"The coupon {normalised} already exists in this program.",
            code="coupon_taken",
            field="code",
        )
    return session.get_one(Coupon, coupon_id)


def find_coupon(session: Session, *, program_id: str, code: str) -> Coupon | None:
    coupon = session.scalar(
        select(Coupon).where(Coupon.program_id == program_id, Coupon.code == normalise_coupon(code))
    )
    if coupon is None or coupon.disabled_at is not None:
        return None
    return coupon


def list_coupons(
    session: Session, *, program_id: str | None, after: str | None, limit: int
) -> list[Coupon]:
    query = select(Coupon).order_by(Coupon.id).limit(limit)
    if program_id is not None:
        query = query.where(Coupon.program_id == program_id)
    if after is not None:
        query = query.where(Coupon.id > after)
    return list(session.scalars(query))


def get_click(session: Session, click_id: str) -> Click | None:
    if not has_kind(click_id, "click"):
        return None
    return session.get(Click, click_id)


# --- the redirect's view of a link, and click recording --------------------------------------


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """Everything the redirect needs about a link, cached in memory by code."""

    link_id: str
    program_id: str
    affiliate_id: str
    destination_url: str
    allowed_domains: tuple[str, ...]
    cookie_days: int
    presets: tuple[tuple[str, str], ...]


def resolve_link(session: Session, code: str) -> LinkTarget | None:
    """The link behind a code, or None if unknown, disabled, or its affiliate is not approved."""
    row = session.execute(
        select(Link, Program.allowed_domains, Program.cookie_days, Affiliate.status)
        .join(Program, Program.id == Link.program_id)
        .join(Affiliate, Affiliate.id == Link.affiliate_id)
        .where(Link.code == code)
    ).one_or_none()
    if row is None:
        return None
    link, allowed_domains, cookie_days, status = row
    if link.disabled_at is not None or status != "approved":
        return None
    return LinkTarget(
        link_id=link.id,
        program_id=link.program_id,
        affiliate_id=link.affiliate_id,
        destination_url=link.destination_url,
        allowed_domains=tuple(allowed_domains),
        cookie_days=cookie_days,
        presets=tuple((name, value) for name in SUB_IDS if (value := getattr(link, name))),
    )


class ClickRecord(NamedTuple):
    """A click as the redirect saw it (a tuple: built on every click, it costs a
    third of a frozen dataclass)."""

    id: str
    program_id: str
    link_id: str
    affiliate_id: str
    created_at: datetime
    ip: str | None
    user_agent: str | None
    referrer: str | None
    landing_url: str
    subs: tuple[str | None, str | None, str | None, str | None, str | None]
    is_unique: bool


_CLICK_INSERT = BulkInsert(Click.__table__)  # type: ignore[arg-type]
CLICK_COLUMNS = tuple(_CLICK_INSERT.columns)
assert _CLICK_INSERT.columns == [
    "id", "program_id", "link_id", "affiliate_id", "created_at", "ip_enc", "user_agent",
    "device", "browser", "os", "is_bot", "is_unique", "referrer", "landing_url", *SUB_IDS,
], "click_row builds its rows in this order"  # fmt: skip

# A click as the row it is stored as (the columns of `clicks`, in order).
ClickRow = tuple[Any, ...]


def click_row(record: ClickRecord, cipher: FieldCipher) -> ClickRow:
    """The stored form of a click: IP encrypted, user agent classified. Separate
    from the write so a busy server can prepare rows while a commit is on disk."""
    info = classify(record.user_agent)
    return (
        record.id,
        record.program_id,
        record.link_id,
        record.affiliate_id,
        record.created_at,
        cipher.encrypt_optional(record.ip, field=IP_FIELD),
        (record.user_agent or "")[:512] or None,
        info.device,
        info.browser,
        info.os,
        info.is_bot,
        record.is_unique and not info.is_bot,
        record.referrer[:2048] if record.referrer else None,
        record.landing_url,
        *record.subs,
    )


class PreparedClicks(NamedTuple):
    """A batch of clicks ready for the driver: their values after the column
    types' processing (core.bulk), and what they add to the rollups."""

    values: list[Any]
    tallies: dict[tuple[str, str, date], list[int]]  # (program, affiliate, day) -> counts


def prepare_clicks(
    dialect: Dialect, cipher: FieldCipher, records: Sequence[ClickRecord]
) -> PreparedClicks:
    """The CPU work of storing clicks, apart from the write (the click store
    does it while the previous batch commits)."""
    rows = [click_row(record, cipher) for record in records]
    tallies: dict[tuple[str, str, date], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        tally = tallies[(row[1], row[3], day_of(row[4]))]
        tally[0] += 1
        tally[1] += row[11]
    return PreparedClicks(_CLICK_INSERT.prepare(dialect, rows), dict(tallies))


def click_statements(dialect: Dialect, batches: Sequence[PreparedClicks]) -> list[Statement]:
    """The statements that store prepared batches of clicks and their rollup
    counts: the inserts, then one upsert per rollup table for all of them."""
    tallies: dict[tuple[str, str, date], list[int]] = defaultdict(lambda: [0, 0])
    values: list[Any] = []
    for batch in batches:
        values.extend(batch.values)
        for key, (clicks, unique) in batch.tallies.items():
            tally = tallies[key]
            tally[0] += clicks
            tally[1] += unique
    return [
        *_CLICK_INSERT.statements(dialect, values),
        *analytics.rollup_statements(
            dialect,
            [
                analytics.RollupAdd(
                    program_id=program_id,
                    affiliate_id=affiliate_id,
                    day=day,
                    increments={"clicks": clicks, "unique_clicks": unique},
                )
                for (program_id, affiliate_id, day), (clicks, unique) in tallies.items()
            ],
        ),
    ]


def write_clicks(session: Session, cipher: FieldCipher, records: Sequence[ClickRecord]) -> None:
    """Insert a batch of clicks and their rollup counts in the caller's transaction."""
    connection = session.connection()
    dialect = connection.dialect
    for sql, parameters in click_statements(dialect, [prepare_clicks(dialect, cipher, records)]):
        connection.exec_driver_sql(sql, parameters)


def new_click_id() -> str:
    return new_id("click")
