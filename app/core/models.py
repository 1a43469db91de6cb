"""Infrastructure tables: the audit log, the inbound-event inbox and the program settings."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, JSONType
from app.core.security import EncryptedBytes


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
    # The hash chain (app/core/audit_chain.py): set by the database on INSERT (a trigger on
    # PostgreSQL, the flush on SQLite), never by the code that records the entry.
    chain_seq: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.FetchedValue(), unique=True)
    prev_hash: Mapped[str] = mapped_column(sa.String(64), server_default=sa.FetchedValue())
    row_hash: Mapped[str] = mapped_column(sa.String(64), server_default=sa.FetchedValue())

    __table_args__ = (
        sa.Index("ix_audit_log_subject", "subject_type", "subject_id", "occurred_at"),
        sa.Index("ix_audit_log_actor", "actor_type", "actor_id", "occurred_at"),
    )


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
    #: The raw body, encrypted; erased (None) after the retention or on the person's withdrawal,
    #: when ``body_sha256`` (of the plaintext) keeps proof of what was received.
    body: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    body_sha256: Mapped[str | None] = mapped_column(sa.String(64))
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
        # The nightly purge looks for processed events that still keep their body.
        sa.Index(
            "ix_inbound_events_body_kept",
            "processed_at",
            postgresql_where=sa.text("body IS NOT NULL"),
            sqlite_where=sa.text("body IS NOT NULL"),
        ),
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


class ProgramSettingRow(Base):
    __tablename__ = "program_settings"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(64))
