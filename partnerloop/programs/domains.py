"""A program's own host names (white label): its portal and its tracking links.

`partners.brand.example` (purpose "portal") serves that program's affiliate
portal at /; `go.brand.example` (purpose "tracking") serves its links at
/{code}. A host names at most one program, for one purpose.

The web app keeps host -> program in memory for some seconds (every request
asks); `changes()` is a counter that moves when a change of hosts commits in
this process, so that memory is dropped at once here (other processes wait
out their short TTL).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import event, select
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


class _Changes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def bump(self) -> None:
        with self._lock:
            self.count += 1


_CHANGES = _Changes()
_PENDING = "partnerloop.program_domains_changed"


def changes() -> int:
    """How many changes of hosts this process has committed (compare, don't count)."""
    return _CHANGES.count


def _note_change(session: Session) -> None:
    # After the commit, not before: a request that looked the host up in between
    # would otherwise cache the old answer again.
    if not session.info.get(_PENDING):
        session.info[_PENDING] = True

        def committed(committed_session: Session) -> None:
            committed_session.info.pop(_PENDING, None)
            _CHANGES.bump()

        event.listen(session, "after_commit", committed, once=True)


def lookup(session: Session, host: str) -> ProgramDomain | None:
    return session.get(ProgramDomain, host)


def domains_of(session: Session, program_id: str) -> dict[str, str]:
    """purpose -> host for one program."""
    rows = session.scalars(select(ProgramDomain).where(ProgramDomain.program_id == program_id))
    return {row.purpose: row.host for row in rows}


def set_domain(
    session: Session,
    *,
    program_id: str,
    purpose: str,
    host: str | None,
    now: datetime,
    reserved: Iterable[str] = (),
) -> bool:
    """Give the program a host for this purpose (None: remove it). `reserved` are
    the installation's own hosts (admin, API), which no program may take over.
    Returns whether anything changed."""
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
    if (current is not None and current.host == wanted) or (current is None and wanted is None):
        return False
    if wanted is not None and wanted in set(reserved):
        raise InvalidInput(
            f"{wanted} is this installation's own host; give the program a host of its own.",
            code="host_reserved",
            field=f"{purpose}_domain",
        )
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
    _note_change(session)
    return True


def tracking_prefixes(
    session: Session, program_ids: Iterable[str], *, public_url: str
) -> dict[str, str]:
    """program id -> what a link's code is appended to, for many programs in one
    query: "https://go.brand.example/" on a tracking domain, else "<public url>/r/"."""
    wanted = set(program_ids)
    prefixes = {program_id: f"{public_url}/r/" for program_id in wanted}
    if not wanted:
        return prefixes
    scheme = "https" if public_url.startswith("https://") else "http"
    rows = session.scalars(
        select(ProgramDomain).where(
            ProgramDomain.program_id.in_(wanted), ProgramDomain.purpose == "tracking"
        )
    )
    for row in rows:
        prefixes[row.program_id] = f"{scheme}://{row.host}/"
    return prefixes


def tracking_url(session: Session, *, program_id: str, code: str, public_url: str) -> str:
    """The URL an affiliate shares: on the program's tracking domain when it has one."""
    return tracking_prefixes(session, [program_id], public_url=public_url)[program_id] + code
