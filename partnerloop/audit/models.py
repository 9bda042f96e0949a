from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from partnerloop.core.db import Base, UTCDateTime


class AuditEntry(Base):
    """One change made by a person or a key: append-only, never updated.

    Details name ids and new values, never personal data (no e-mails, names or
    payout details): the log is read by every role that may read the program.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "program_id", "at"), Index(None, "at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_kind: Mapped[str] = mapped_column(String(16))  # staff | api_key | affiliate | system
    actor_id: Mapped[str] = mapped_column(String(32))
    # The program the change belongs to; NULL for changes to the installation.
    program_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))  # "affiliate.approved", "connector.updated"
    subject_kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
