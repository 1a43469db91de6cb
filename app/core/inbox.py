"""The inbound-event inbox: every partner event is stored raw (encrypted) before it is processed.

A unique (source, external_id) makes redelivery harmless: the second insert does nothing and the
caller acknowledges it as a duplicate. Processing happens in a job that locks the row, so a
retried or re-enqueued job never applies an event twice.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, db, insert_if_absent
from app.core.security import EncryptedBytes

RECEIVED = "received"
PROCESSED = "processed"
FAILED = "failed"  # an attempt failed; the job retries and the sweeper re-enqueues
DEAD = "dead"  # gave up after the configured attempts; an operator looks at last_error


class InboundEvent(Base):
    __tablename__ = "inbound_events"

    id: Mapped[BigIntPK]
    source: Mapped[str] = mapped_column(sa.String(16))  # dms, wechat, crm
    external_id: Mapped[str] = mapped_column(sa.String(128))
    type: Mapped[str] = mapped_column(sa.String(64))
    occurred_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dealer_code: Mapped[str | None] = mapped_column(sa.String(16))
    body: Mapped[bytes] = mapped_column(EncryptedBytes)
    status: Mapped[str] = mapped_column(sa.String(16), default=RECEIVED)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str | None] = mapped_column(sa.String(255))
    #: The reply we gave (WeChat callbacks): a retry of the same message gets the same answer.
    response: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    processed_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # The race guard for redelivery: concurrent duplicates collide here, exactly one wins.
        sa.UniqueConstraint("source", "external_id"),
        sa.Index(
            "ix_inbound_events_pending",
            "received_at",
            postgresql_where=sa.text("status IN ('received', 'failed')"),
            sqlite_where=sa.text("status IN ('received', 'failed')"),
        ),
        sa.Index("ix_inbound_events_type_occurred", "source", "type", "occurred_at"),
    )


def store_event(
    *,
    source: str,
    external_id: str,
    type: str,
    body: bytes,
    occurred_at: dt.datetime | None = None,
    dealer_code: str | None = None,
) -> int | None:
    """Insert the raw event; returns its id, or None when (source, external_id) was seen before."""
    return insert_if_absent(
        InboundEvent,
        {
            "source": source,
            "external_id": external_id,
            "type": type,
            "body": body,
            "occurred_at": occurred_at,
            "received_at": utcnow(),
            "dealer_code": dealer_code,
            "status": RECEIVED,
            "attempts": 0,
        },
        conflict_columns=("source", "external_id"),
    )


def lock_for_processing(event_id: int) -> InboundEvent | None:
    """The event row locked for this transaction, or None if another worker holds it."""
    return db.session.get(InboundEvent, event_id, with_for_update={"skip_locked": True})


def stalled_event_ids(older_than: dt.datetime, limit: int = 500) -> list[int]:
    """Events still waiting since before ``older_than``: the sweeper re-enqueues these."""
    query = (
        sa.select(InboundEvent.id)
        .where(InboundEvent.status.in_((RECEIVED, FAILED)), InboundEvent.received_at < older_than)
        .order_by(InboundEvent.received_at)
        .limit(limit)
    )
    return list(db.session.scalars(query))
