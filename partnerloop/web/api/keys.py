from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access import service as access
from partnerloop.access.models import ApiKey
from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Forbidden, NotFound
from partnerloop.programs import service as programs
from partnerloop.web.api.common import ERRORS, audit
from partnerloop.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(tags=["api keys"])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    scope: Literal["read", "write", "admin"]
    program_id: str | None = Field(
        default=None, description="Bind the key to one program (null: all)."
    )


class KeyOut(BaseModel):
    id: str
    name: str
    scope: str
    program_id: str | None
    created_at: datetime
    revoked: bool
    key: str | None = Field(default=None, description="The key itself: shown once, at creation.")


class KeyList(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None = None


def key_out(row: ApiKey, secret: str | None = None) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        scope=row.scope,
        program_id=row.program_id,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
        key=secret,
    )


@router.post("/api-keys", status_code=201, response_model=KeyOut, responses=ERRORS)
def create_key(body: KeyIn, principal: PrincipalDep, runtime: RuntimeDep) -> KeyOut:
    """Create a key. An admin key bound to a program can only make keys for that program."""
    principal.require(Scope.admin, Permission.MANAGE_STAFF)
    program_id = body.program_id
    if principal.program_id is not None:
        if program_id is None:
            raise Forbidden(
                "This key is bound to one program; it can only create keys for that program.",
                code="key_bound_to_program",
                field="program_id",
            )
        principal.require_program(program_id)
    with transaction(runtime.sessions) as session:
        if program_id is not None:
            programs.get_or_raise(session, program_id)
        created = access.create(
            session, name=body.name, scope=Scope[body.scope], program_id=program_id, now=utcnow()
        )
        audit(
            session,
            principal,
            action="api_key.created",
            subject_kind="api_key",
            subject_id=created.key.id,
            program_id=program_id,
            details={"scope": body.scope},
        )
        return key_out(created.key, created.secret)


@router.get("/api-keys", response_model=KeyList, responses=ERRORS)
def list_keys(principal: PrincipalDep, runtime: RuntimeDep) -> KeyList:
    principal.require(Scope.admin, Permission.MANAGE_STAFF)
    with runtime.sessions() as session:
        rows = access.list_keys(session)
    visible = [
        r for r in rows if principal.program_id is None or r.program_id == principal.program_id
    ]
    return KeyList(items=[key_out(r) for r in visible])


@router.delete("/api-keys/{key_id}", response_model=KeyOut, responses=ERRORS)
def revoke_key(key_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> KeyOut:
    """Revoke a key; it stops working at once."""
    principal.require(Scope.admin, Permission.MANAGE_STAFF)
    with transaction(runtime.sessions) as session:
        row = session.get(ApiKey, key_id)
        if row is None or (
            principal.program_id is not None and row.program_id != principal.program_id
        ):
            raise NotFound(f"No API key {key_id}.", code="api_key_not_found")
        revoked = access.revoke(session, key_id=key_id, now=utcnow())
        audit(
            session,
            principal,
            action="api_key.revoked",
            subject_kind="api_key",
            subject_id=revoked.id,
            program_id=revoked.program_id,
        )
        return key_out(revoked)
