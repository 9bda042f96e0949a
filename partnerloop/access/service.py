"""API keys: shown once, stored as a hash, scoped, bound to one program or all."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.access.models import ApiKey
from partnerloop.access.roles import Permission, Role, allows
from partnerloop.core.crypto import constant_time_equal, hash_token, new_token
from partnerloop.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from partnerloop.core.ids import has_kind, new_id

KEY_PREFIX = "pl_"
_KEY_ID_LEN = len("key_") + 26


class Scope(enum.IntEnum):
    # Ordered: a key may do what its scope and every lower scope allow.
    read = 1
    write = 2
    admin = 3


@dataclass(frozen=True)
class Principal:
    """Who is calling, as far as authorization needs to know: an API key (with a
    scope), or a staff member signed in to the admin pages (with a role)."""

    key_id: str  # the API key's id, or the staff user's id
    scope: Scope
    program_id: str | None  # None: every program
    role: Role | None = None  # set for staff sessions: the role matrix decides

    @property
    def actor_kind(self) -> str:
        return "api_key" if self.role is None else "staff"

    def require(self, scope: Scope, permission: Permission | None = None) -> None:
        """API keys need the scope; staff need the permission (READ for reads).
        A write that names no permission is not open to staff sessions."""
        if self.role is not None:
            needed = Permission.READ if scope is Scope.read else permission
            if needed is None or not allows(self.role, needed):
                raise Forbidden(
                    f"Your role ({self.role.value}) does not allow this.", code="role_forbids"
                )
            return
        if self.scope < scope:
            raise Forbidden(
                f"This API key has scope '{self.scope.name}'; this needs '{scope.name}'.",
                code="insufficient_scope",
            )

    def require_program(self, program_id: str) -> None:
        # The same answer as for a program that does not exist: a key bound to
        # program A learns nothing about program B, not even that it exists.
        if self.program_id is not None and self.program_id != program_id:
            raise NotFound(
                f"No program {program_id}.", code="program_not_found", field="program_id"
            )

    def require_all_programs(self) -> None:
        if self.program_id is not None:
            raise Forbidden(
                "This API key is bound to one program; this needs a key for all programs.",
                code="key_bound_to_program",
            )

    def visible_program(self, requested: str | None) -> str | None:
        """The program filter a list query must use for this caller."""
        if requested is not None:
            self.require_program(requested)
            return requested
        return self.program_id


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # the full key, shown to the user once and never stored


def parse_scope(value: str) -> Scope:
    try:
        return Scope[value]
    except KeyError:
        raise InvalidInput(
            f"Unknown scope {value!r}; use read, write or admin.",
            code="invalid_scope",
            field="scope",
        ) from None


def create(
    session: Session, *, name: str, scope: Scope, program_id: str | None, now: datetime
) -> CreatedKey:
    key_id = new_id("api_key")
    secret = new_token(24)
    row = ApiKey(
        id=key_id,
        name=name,
        scope=scope.name,
        program_id=program_id,
        secret_hash=hash_token(secret),
        created_at=now,
        revoked_at=None,
    )
    session.add(row)
    session.flush()
    # pl_<key id>_<secret>: the id finds the row, the secret is compared in constant time.
    return CreatedKey(key=row, secret=f"{KEY_PREFIX}{key_id}_{secret}")


def authenticate(session: Session, *, presented: str) -> Principal:
    rejected = Unauthorized(
        "Missing or invalid API key. Send 'Authorization: Bearer <key>'.", code="invalid_api_key"
    )
    if not presented.startswith(KEY_PREFIX):
        raise rejected
    # The secret may itself contain '_', so split by the id's fixed length.
    body = presented[len(KEY_PREFIX) :]
    key_id, sep, secret = (
        body[:_KEY_ID_LEN],
        body[_KEY_ID_LEN : _KEY_ID_LEN + 1],
        body[_KEY_ID_LEN + 1 :],
    )
    if sep != "_" or not secret or not has_kind(key_id, "api_key"):
        raise rejected
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise rejected
    if not constant_time_equal(row.secret_hash, hash_token(secret)):
        raise rejected
    return Principal(key_id=row.id, scope=Scope[row.scope], program_id=row.program_id)


def revoke(session: Session, *, key_id: str, now: datetime) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"No API key {key_id}.", code="api_key_not_found")
    if row.revoked_at is None:
        row.revoked_at = now
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def staff_principal(*, user_id: str, role: str, program_id: str | None) -> Principal:
    """A staff member calling the API with their page session. The scope is
    unused for staff (require() checks the role); it says what the role
    amounts to at most."""
    parsed = Role(role)
    scope = Scope.read if parsed is Role.ANALYST else Scope.admin
    return Principal(key_id=user_id, scope=scope, program_id=program_id, role=parsed)
