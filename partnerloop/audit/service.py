"""Writing and reading the audit log.

record() joins the caller's transaction: the entry commits with the change it
describes, or neither does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.audit.models import AuditEntry
from partnerloop.core.ids import new_id


@dataclass(frozen=True)
class Actor:
    kind: str  # staff | api_key | affiliate | system
    id: str


def record(
    session: Session,
    actor: Actor,
    *,
    action: str,
    subject_kind: str,
    subject_id: str,
    program_id: str | None,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        id=new_id("audit"),
        at=now,
        actor_kind=actor.kind,
        actor_id=actor.id,
        program_id=program_id,
        action=action,
        subject_kind=subject_kind,
        subject_id=subject_id,
        details=details or {},
    )
    session.add(entry)
    return entry


def entries(
    session: Session,
    *,
    program_id: str | None,
    limit: int = 50,
    before_id: str | None = None,
    action_prefix: str | None = None,
) -> list[AuditEntry]:
    """Newest first. program_id None: every program (and installation-wide entries)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if program_id is not None:
        query = query.where(AuditEntry.program_id == program_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if action_prefix:
        query = query.where(AuditEntry.action.startswith(action_prefix, autoescape=True))
    return list(session.scalars(query))
