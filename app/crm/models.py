"""The CRM outbox and sync state, and merge requests.

* ``crm_outbox``: one row per change to a member that the CRM must learn, written in the same
  transaction as the change (``crm/events.py``). It holds ids only: the payload is built from the
  current rows when it is sent, so no personal data rests in the outbox. ``seq`` numbers a member's
  rows; a member's rows are delivered in ``seq`` order (``crm/outbox.py``).
* ``crm_member_sync``: per member, the last ``seq`` handed out (its row lock serializes numbering)
  and when the CRM last acknowledged a delivery.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

OUTBOX_STATUSES = ("pending", "delivered", "dead", "skipped")
OUTBOX_KINDS = ("member", "identity", "consent", "ownership", "tier", "balance", "snapshot", "merge")
#: Rows that still hold back the member's later rows.
BLOCKING = ("pending", "dead")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class CrmOutboxEntry(Base):
    __tablename__ = "crm_outbox"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    seq: Mapped[int] = mapped_column(BigIntType)
    kind: Mapped[str] = mapped_column(sa.String(12))
    #: Ids only (the changed row, the merged members); the CRM payload is built at send time.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.UniqueConstraint("member_id", "seq"),
        sa.CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
        sa.CheckConstraint(_in("kind", OUTBOX_KINDS), name="kind"),
        # The delivery worker's scan: due pending rows, oldest first.
        sa.Index(
            "ix_crm_outbox_due",
            "next_attempt_at",
            "id",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        # "Does an earlier row of this member still block?" and the sync-state counts.
        sa.Index(
            "ix_crm_outbox_member_open",
            "member_id",
            "seq",
            postgresql_where=sa.text("status IN ('pending', 'dead')"),
            sqlite_where=sa.text("status IN ('pending', 'dead')"),
        ),
    )


class CrmMemberSync(Base):
    __tablename__ = "crm_member_sync"

    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigIntType, default=0)
    last_delivered_at: Mapped[dt.datetime | None]
