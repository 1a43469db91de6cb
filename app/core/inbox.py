"""The inbound-event inbox: every partner event is stored raw (encrypted) before it is processed.

A unique (source, external_id) makes redelivery harmless: the second insert does nothing and the
caller acknowledges it as a duplicate. Processing happens in a job that locks the row, so a
retried or re-enqueued job never applies an event twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import os

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, db, insert_if_absent
from app.core.group_commit import GroupInserter
from app.core.security import EncryptedBytes, cipher

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
    #: After a failed attempt: not before this (backoff). None: as soon as possible.
    next_attempt_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str | None] = mapped_column(sa.String(255))
    #: The reply we gave (WeChat callbacks): a retry of the same message gets the same answer.
    response: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    processed_at: Mapped[dt.datetime | None]
    #: WeChat callbacks: the signed ``timestamp:nonce`` of the request that brought the event. In
    #: plaintext mode the signature does not cover the body, so this is what stops a captured
    #: query string from being replayed with another body (see ``ReplayedNonce``).
    signed_nonce: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        # The race guard for redelivery: concurrent duplicates collide here, exactly one wins.
        sa.UniqueConstraint("source", "external_id"),
        sa.Index(
            "ix_inbound_events_signed_nonce",
            "source",
            "signed_nonce",
            unique=True,
            postgresql_where=sa.text("signed_nonce IS NOT NULL"),
            sqlite_where=sa.text("signed_nonce IS NOT NULL"),
        ),
        # Draining claims the oldest waiting event of a source; the sweeper looks for stale ones.
        sa.Index(
            "ix_inbound_events_waiting",
            "source",
            "id",
            postgresql_where=sa.text("status IN ('received', 'failed')"),
            sqlite_where=sa.text("status IN ('received', 'failed')"),
        ),
        sa.Index("ix_inbound_events_type_occurred", "source", "type", "occurred_at"),
    )


class ReplayedNonce(Exception):
    """Another event was already stored under this ``signed_nonce``: the request is a replay."""


def _row(
    *,
    source: str,
    external_id: str,
    type: str,
    body: bytes,
    occurred_at: dt.datetime | None,
    dealer_code: str | None,
    signed_nonce: str | None,
) -> dict[str, object]:
    return {
        "source": source,
        "external_id": external_id,
        "type": type,
        "body": body,
        "occurred_at": occurred_at,
        "received_at": utcnow(),
        "dealer_code": dealer_code,
        "status": RECEIVED,
        "attempts": 0,
        "signed_nonce": signed_nonce,
    }


def store_event(
    *,
    source: str,
    external_id: str,
    type: str,
    body: bytes,
    occurred_at: dt.datetime | None = None,
    dealer_code: str | None = None,
    signed_nonce: str | None = None,
) -> int | None:
    """Insert the raw event; returns its id, or None when (source, external_id) was seen before.

    Raises ``ReplayedNonce`` when ``signed_nonce`` already brought a *different* event (the same
    event under the same nonce is WeChat retrying: a duplicate, None).
    """
    values = _row(
        source=source,
        external_id=external_id,
        type=type,
        body=body,
        occurred_at=occurred_at,
        dealer_code=dealer_code,
        signed_nonce=signed_nonce,
    )
    try:
        return insert_if_absent(InboundEvent, values, conflict_columns=("source", "external_id"))
    except sa.exc.IntegrityError:
        # (source, external_id) conflicts are the arbiter (DO NOTHING); the only other unique
        # key is the nonce.
        raise ReplayedNonce(signed_nonce) from None


def store_event_at_once(
    *, source: str, external_id: str, type: str, body: bytes, occurred_at: dt.datetime, signed_nonce: str | None = None
) -> int | None:
    """``store_event`` as its own transaction, committed when this returns (the caller nudges
    the drain at once, not after a commit).

    The callback's hot path (a launch-day QR scan stores its event and nothing else): an
    autocommitted INSERT outside the session, shared by the requests storing at the same moment
    (``group_commit``). Compared with the session it skips BEGIN, COMMIT and the ORM's
    unit-of-work machinery, and under load most round trips and WAL flushes. Falls back to
    ``store_event`` in the session where the engine is not PostgreSQL or the session is bound to
    an outer transaction (tests), so nothing escapes it.
    """
    bind = db.bind
    if not isinstance(bind, sa.Engine) or bind.dialect.name != "postgresql":
        return store_event(
            source=source,
            external_id=external_id,
            type=type,
            body=body,
            occurred_at=occurred_at,
            signed_nonce=signed_nonce,
        )
    # Outside the session nothing applies the column types: encrypt as EncryptedBytes would.
    values = _row(
        source=source,
        external_id=external_id,
        type=type,
        body=cipher().encrypt_bytes(body),
        occurred_at=occurred_at,
        dealer_code=None,
        signed_nonce=signed_nonce,
    )
    try:
        return _group_inserter(bind).insert(values)
    except psycopg.errors.UniqueViolation:
        raise ReplayedNonce(signed_nonce) from None  # as in store_event


@functools.cache
def _group_inserter(engine: sa.Engine) -> GroupInserter:
    return GroupInserter(engine, InboundEvent.__table__, ("source", "external_id"))  # type: ignore[arg-type]


os.register_at_fork(after_in_child=_group_inserter.cache_clear)  # a child starts with no batch in flight


def _waiting(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        InboundEvent.status.in_((RECEIVED, FAILED)),
        sa.or_(InboundEvent.next_attempt_at.is_(None), InboundEvent.next_attempt_at <= now),
    )


def mark(event_id: int, **values: object) -> None:
    """Update an event's processing state by id (without loading and decrypting its body)."""
    db.session.execute(sa.update(InboundEvent).where(InboundEvent.id == event_id).values(**values))


def lock_for_processing(event_id: int) -> InboundEvent | None:
    """The event row locked for this transaction, or None if another worker holds it."""
    return db.session.get(InboundEvent, event_id, with_for_update={"skip_locked": True})


def claim_next(source: str, now: dt.datetime) -> InboundEvent | None:
    """The oldest event of ``source`` that is due, locked; others draining skip it."""
    return db.session.scalars(
        sa.select(InboundEvent)
        .where(InboundEvent.source == source, _waiting(now))
        .order_by(InboundEvent.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).one_or_none()


def sources_with_stalled_events(now: dt.datetime, older_than: dt.datetime) -> list[str]:
    """Sources with due events received before ``older_than``: their nudge was lost (or failed)."""
    return list(
        db.session.scalars(
            sa.select(InboundEvent.source).where(_waiting(now), InboundEvent.received_at < older_than).distinct()
        )
    )
