"""A program's own host names (white label): its portal and its tracking links.

`partners.brand.example` (purpose "portal") serves that program's affiliate
portal at /; `go.brand.example` (purpose "tracking") serves its links at
/{code}. A host names at most one program, for one purpose.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.core.errors import Conflict, InvalidInput
from partnerloop.programs.models import ProgramDomain

PURPOSES = ("portal", "tracking")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")


def normalise_host(raw: str, *, field: str = "host") -> str:
    """A bare host name, lower case, no port, no trailing dot."""
    host = raw.strip().lower().rstrip(".")
    if len(host) > 253 or not _HOST_RE.match(host):
        raise InvalidInput(
            f"{raw!r} is not a host name; give the bare host, e.g. partners.brand.example.",
            code="invalid_host",
            field=field,
        )
    return host


def host_of_header(value: str | None) -> str | None:
    """The host name in a Host header ("Go.Brand.Example:443" -> "go.brand.example")."""
    if not value:
        return None
    host = value.strip().lower()
    if host.startswith("["):  # IPv6 literal
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


def lookup(session: Session, host: str) -> ProgramDomain | None:
    return session.get(ProgramDomain, host)


def domains_of(session: Session, program_id: str) -> dict[str, str]:
    """purpose -> host for one program."""
    rows = session.scalars(select(ProgramDomain).where(ProgramDomain.program_id == program_id))
    return {row.purpose: row.host for row in rows}


def set_domain(
    session: Session, *, program_id: str, purpose: str, host: str | None, now: datetime
) -> None:
    """Give the program a host for this purpose (None: remove it)."""
    if purpose not in PURPOSES:
        raise InvalidInput(
            f"Unknown purpose {purpose!r}; use portal or tracking.",
            code="invalid_purpose",
            field="purpose",
        )
    current = session.scalars(
        select(ProgramDomain).where(
            ProgramDomain.program_id == program_id, ProgramDomain.purpose == purpose
        )
    ).first()
    wanted = normalise_host(host, field=f"{purpose}_domain") if host else None
    if current is not None and current.host == wanted:
        return
    if wanted is not None:
        taken = session.get(ProgramDomain, wanted)
        if taken is not None:
            raise Conflict(
                f"{wanted} is already in use.", code="host_taken", field=f"{purpose}_domain"
            )
    if current is not None:
        session.delete(current)
        session.flush()
    if wanted is not None:
        session.add(
            ProgramDomain(host=wanted, program_id=program_id, purpose=purpose, created_at=now)
        )
        session.flush()


def tracking_url(session: Session, *, program_id: str, code: str, public_url: str) -> str:
    """The URL an affiliate shares: on the program's tracking domain when it has one."""
    host = domains_of(session, program_id).get("tracking")
    if host is not None:
        scheme = "https" if public_url.startswith("https://") else "http"
        return f"{scheme}://{host}/{code}"
    return f"{public_url}/r/{code}"
