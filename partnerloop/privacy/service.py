"""Data-subject requests: recorded exactly once, with a deadline.

Acting on them (export, erasure, propagation to connectors) is the privacy
workflow's job; until it exists every request stays `open` and is listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import insert_if_absent
from partnerloop.core.ids import new_id
from partnerloop.privacy.models import PrivacyRequest

KINDS = ("data_request", "customer_redact", "shop_redact")
DETAILS_FIELD = "privacy.details"
# GDPR: answer within one month; Shopify asks for erasure within 30 days.
DEADLINE = timedelta(days=30)


@dataclass(frozen=True)
class PrivacyFacts:
    kind: str
    external_id: str  # the shop's id for this request (dedupe key)
    customer_external_id: str | None
    details: dict[str, Any]


def record_request(
    session: Session,
    cipher: FieldCipher,
    *,
    program_id: str,
    source: str,
    facts: PrivacyFacts,
    now: datetime,
) -> PrivacyRequest:
    if facts.kind not in KINDS:
        raise ValueError(f"unknown privacy request kind {facts.kind!r}")
    insert_if_absent(
        session,
        PrivacyRequest.__table__,  # type: ignore[arg-type]
        {
            "id": new_id("privacy_request"),
            "program_id": program_id,
            "source": source,
            "external_id": facts.external_id,
            "kind": facts.kind,
            "customer_external_id": facts.customer_external_id,
            "details_enc": cipher.encrypt(
                json.dumps(facts.details, sort_keys=True, default=str), field=DETAILS_FIELD
            ),
            "state": "open",
            "received_at": now,
            "due_at": now + DEADLINE,
        },
        conflict_columns=("program_id", "source", "external_id"),
    )
    return session.scalars(
        select(PrivacyRequest).where(
            PrivacyRequest.program_id == program_id,
            PrivacyRequest.source == source,
            PrivacyRequest.external_id == facts.external_id,
        )
    ).one()


def list_requests(session: Session, *, program_id: str | None) -> list[PrivacyRequest]:
    query = select(PrivacyRequest).order_by(PrivacyRequest.id)
    if program_id is not None:
        query = query.where(PrivacyRequest.program_id == program_id)
    return list(session.scalars(query))
