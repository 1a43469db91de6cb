"""Append-only audit log: who did what to which record, when and why.

Every customer-service or staff read of a member record and every manual change writes one row.
The database refuses UPDATE and DELETE on this table (a trigger, see the migrations).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, db
from app.core.http import current_request_id


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[BigIntPK]
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(sa.String(16))  # staff, member, system, cli
    actor_id: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(64))
    subject_type: Mapped[str] = mapped_column(sa.String(32))
    subject_id: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str | None] = mapped_column(sa.String(255))
    details: Mapped[dict[str, Any] | None]
    request_id: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.Index("ix_audit_log_subject", "subject_type", "subject_id", "occurred_at"),
        sa.Index("ix_audit_log_actor", "actor_type", "actor_id", "occurred_at"),
    )


def record(
    *,
    actor: tuple[str, str | int],
    action: str,
    subject: tuple[str, str | int],
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit row to the current unit of work (it commits with the change it describes)."""
    entry = AuditEntry(
        actor_type=actor[0],
        actor_id=str(actor[1]),
        action=action,
        subject_type=subject[0],
        subject_id=str(subject[1]),
        reason=reason,
        details=details,
        request_id=current_request_id(),
    )
    db.session.add(entry)
    return entry
