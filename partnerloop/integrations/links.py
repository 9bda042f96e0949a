"""One customer at one remote system (a CRM, or a shop written back to): the
remote side's id for them, a per-customer lease, and what the CRM last told us.

The lease keeps two deliveries of one customer to one system from overtaking
each other: a delivery takes it, reads the customer's current state, sends,
and releases it. A worker that dies holding it frees it when the lease runs out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import parse_datetime, utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import insert_if_absent, transaction
from partnerloop.core.ids import new_id
from partnerloop.integrations.models import CrmLink

LEASE_SECONDS = 120  # longer than a read and a write at the HTTP timeout
RETRY_SECONDS = 1.0
VALUES_FIELD = "crm_links.crm_values"


def _ensure(session: Session, connector_id: str, customer_id: str, now: datetime) -> None:
    insert_if_absent(
        session,
        CrmLink.__table__,  # type: ignore[arg-type]
        {
            "id": new_id("crm_link"),
            "connector_id": connector_id,
            "customer_id": customer_id,
            "created_at": now,
        },
        conflict_columns=("connector_id", "customer_id"),
    )


def lease(
    sessions: sessionmaker[Session], connector_id: str, customer_id: str, token: str, now: datetime
) -> bool:
    """Lease the customer for one delivery; False while another delivery holds it."""
    return customer_id in lease_many(sessions, connector_id, [customer_id], token, now)


def lease_many(
    sessions: sessionmaker[Session],
    connector_id: str,
    customer_ids: Sequence[str],
    token: str,
    now: datetime,
) -> set[str]:
    """Lease these customers for one delivery (a batch), in one transaction; returns
    the ones leased (the others are held by another delivery)."""
    if not customer_ids:
        return set()
    with transaction(sessions) as session:
        for customer_id in customer_ids:
            _ensure(session, connector_id, customer_id, now)
        session.execute(
            update(CrmLink)
            .where(
                CrmLink.connector_id == connector_id,
                CrmLink.customer_id.in_(list(customer_ids)),
                or_(CrmLink.locked_until.is_(None), CrmLink.locked_until < now),
            )
            .values(locked_by=token, locked_until=now + timedelta(seconds=LEASE_SECONDS))
        )
        return set(
            session.scalars(
                select(CrmLink.customer_id).where(
                    CrmLink.connector_id == connector_id,
                    CrmLink.customer_id.in_(list(customer_ids)),
                    CrmLink.locked_by == token,
                )
            )
        )


def release(
    sessions: sessionmaker[Session],
    connector_id: str,
    customer_id: str,
    token: str,
    remote_id: str | None,
) -> None:
    release_many(sessions, connector_id, token, {customer_id: remote_id} if remote_id else {})


def release_many(
    sessions: sessionmaker[Session],
    connector_id: str,
    token: str,
    remote_ids: Mapping[str, str],
) -> None:
    """Free every lease this delivery holds, keeping the remote ids it learnt."""
    with transaction(sessions) as session:
        for customer_id, remote_id in remote_ids.items():
            session.execute(
                update(CrmLink)
                .where(
                    CrmLink.connector_id == connector_id,
                    CrmLink.customer_id == customer_id,
                    CrmLink.locked_by == token,
                )
                .values(remote_id=remote_id, last_sent_at=utcnow())
            )
        session.execute(
            update(CrmLink)
            .where(CrmLink.connector_id == connector_id, CrmLink.locked_by == token)
            .values(locked_by=None, locked_until=None)
        )


# --- what the CRM says about a customer -----------------------------------------------


@dataclass(frozen=True)
class Stamped:
    value: str | None
    at: datetime  # when the change happened at the CRM


def by_remote_id(session: Session, connector_id: str, remote_id: str) -> CrmLink | None:
    return session.scalars(
        select(CrmLink).where(CrmLink.connector_id == connector_id, CrmLink.remote_id == remote_id)
    ).first()


def remote_id(session: Session, connector_id: str, customer_id: str) -> str | None:
    return session.scalars(
        select(CrmLink.remote_id).where(
            CrmLink.connector_id == connector_id, CrmLink.customer_id == customer_id
        )
    ).first()


def crm_values(cipher: FieldCipher, link: CrmLink) -> dict[str, Stamped]:
    if not link.crm_values_enc:
        return {}
    stored = json.loads(cipher.decrypt(link.crm_values_enc, field=VALUES_FIELD))
    return {
        name: Stamped(item["value"], parse_datetime(item["at"])) for name, item in stored.items()
    }


def record_values(
    cipher: FieldCipher,
    link: CrmLink,
    values: Mapping[str, str | None],
    *,
    occurred_at: datetime,
) -> bool:
    """Keep the CRM's new values where they are newer than what we hold (webhooks
    arrive late and out of order). True when anything changed."""
    current = crm_values(cipher, link)
    changed = False
    for name, value in values.items():
        held = current.get(name)
        if held is not None and held.at >= occurred_at:
            continue  # an older change arriving late: the newer value stays
        if held is None or held.value != value:
            changed = True
        current[name] = Stamped(value, occurred_at)
    link.crm_values_enc = cipher.encrypt(
        json.dumps(
            {n: {"value": s.value, "at": s.at.isoformat()} for n, s in sorted(current.items())}
        ),
        field=VALUES_FIELD,
    )
    return changed


def merged_values(cipher: FieldCipher, rows: Iterable[CrmLink]) -> dict[str, str | None]:
    """A customer's CRM values over every CRM that holds them: per property the newest."""
    newest: dict[str, Stamped] = {}
    for row in rows:
        for name, stamped in crm_values(cipher, row).items():
            if name not in newest or stamped.at > newest[name].at:
                newest[name] = stamped
    return {name: stamped.value for name, stamped in sorted(newest.items())}
