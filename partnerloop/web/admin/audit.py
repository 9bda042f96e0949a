"""Admin page: the program's audit log, newest first: who (a staff member's
e-mail, or the API key / system id), did what, to what, when, with which
settings. Every role that may read the program may read it (its entries
carry ids and settings, never personal data; the staff e-mail is shown to
staff of the same program only)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partnerloop.access import staff as staff_accounts
from partnerloop.access.models import StaffUser
from partnerloop.access.roles import Permission
from partnerloop.audit import service as audit_log
from partnerloop.audit.models import AuditEntry
from partnerloop.core.crypto import FieldCipher
from partnerloop.web.admin.guard import ProgramChoice, ProgramQuery, StaffDep
from partnerloop.web.admin.manage_helpers import PAGE_SIZE, link, when
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render

router = APIRouter(include_in_schema=False)

# Action prefixes offered as suggestions in the filter (any prefix works).
KNOWN_PREFIXES = (
    "affiliate.",
    "commission.",
    "connector.",
    "outbox_message.",
    "program.",
    "payout.",
    "staff.",
)


@dataclass(frozen=True)
class EntryRow:
    id: str
    at: str
    actor_kind: str
    actor: str  # a staff member's e-mail, else the actor's id
    action: str
    subject_kind: str
    subject_id: str
    subject_url: str | None
    details: str


def _subject_url(entry: AuditEntry, program: ProgramChoice) -> str | None:
    pages = {
        "affiliate": f"/admin/affiliates/{entry.subject_id}",
        "connector": "/admin/connectors",
        "outbox_message": f"/admin/deliveries/{entry.subject_id}",
    }
    page = pages.get(entry.subject_kind)
    return link(page, program=program.id) if page else None


def _rows(
    session: Session, cipher: FieldCipher, entries: list[AuditEntry], program: ProgramChoice
) -> list[EntryRow]:
    emails: dict[str, str] = {}
    for entry in entries:
        if entry.actor_kind == "staff" and entry.actor_id not in emails:
            user = session.get(StaffUser, entry.actor_id)
            emails[entry.actor_id] = (
                staff_accounts.email_of(cipher, user) if user is not None else entry.actor_id
            )
    return [
        EntryRow(
            id=entry.id,
            at=when(entry.at),
            actor_kind=entry.actor_kind,
            actor=emails.get(entry.actor_id, entry.actor_id)
            if entry.actor_kind == "staff"
            else entry.actor_id,
            action=entry.action,
            subject_kind=entry.subject_kind,
            subject_id=entry.subject_id,
            subject_url=_subject_url(entry, program),
            details=json.dumps(entry.details, sort_keys=True, ensure_ascii=False)
            if entry.details
            else "",
        )
        for entry in entries
    ]


@router.get("/admin/audit")
def audit_page(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    action: str | None = None,
    before: str | None = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    prefix = (action or "").strip()
    with runtime.sessions() as session:
        found = audit_log.entries(
            session,
            program_id=chosen.id,
            limit=PAGE_SIZE + 1,
            before_id=before or None,
            action_prefix=prefix or None,
        )
        rows = _rows(session, runtime.cipher, found[:PAGE_SIZE], chosen)
    params: dict[str, str | None] = {"program": chosen.id, "action": prefix}
    return render(
        request,
        "admin/audit.html",
        language=staff.language,
        staff=staff,
        program=chosen,
        rows=rows,
        action=prefix,
        prefixes=KNOWN_PREFIXES,
        first_url=link("/admin/audit", **params) if before else None,
        next_url=link("/admin/audit", **params, before=rows[-1].id)
        if len(found) > PAGE_SIZE
        else None,
    )
