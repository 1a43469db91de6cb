"""Infrastructure tables: the audit log, the inbound-event inbox and the program settings."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType, JSONType
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
        # /metrics counts the dead events per source at every scrape; an operator lists them.
        sa.Index(
            "ix_inbound_events_dead",
            "source",
            "id",
            postgresql_where=sa.text("status = 'dead'"),
            sqlite_where=sa.text("status = 'dead'"),
        ),
    )


class ProgramSettingRow(Base):
    __tablename__ = "program_settings"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(64))


IMPORT_KINDS = ("dealer_club", "dealer_master", "staff_master")
IMPORT_STATUSES = ("queued", "running", "done", "failed")


class ImportRun(Base):
    """One bulk import of a file (a dealer club's members, HQ's dealer or staff master file).

    ``(kind, scope, file_sha256)`` identifies the run, so the same file run again resumes after
    ``rows_done``, the last data row whose chunk committed (the progress commits with the chunk's
    rows). Dry runs roll back and leave no row.
    """

    __tablename__ = "import_runs"

    id: Mapped[BigIntPK]
    kind: Mapped[str] = mapped_column(sa.String(16))
    #: The dealer code of a club file; ``hq`` for master data.
    scope: Mapped[str] = mapped_column(sa.String(32))
    file_sha256: Mapped[str] = mapped_column(sa.String(64))
    file_name: Mapped[str] = mapped_column(sa.String(255))
    #: Where an uploaded file is kept until its job has run it.
    stored_path: Mapped[str | None] = mapped_column(sa.String(512))
    requested_by: Mapped[str] = mapped_column(sa.String(64))
    #: The operator's language: the error report's reasons are written in it.
    locale: Mapped[str] = mapped_column(sa.String(8), default="zh_CN")
    status: Mapped[str] = mapped_column(sa.String(8), default="queued")
    rows_done: Mapped[int] = mapped_column(default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    failure: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.UniqueConstraint("kind", "scope", "file_sha256"),
        sa.CheckConstraint(f"kind IN {IMPORT_KINDS}", name="kind"),
        sa.CheckConstraint(f"status IN {IMPORT_STATUSES}", name="status"),
    )


class ImportRowError(Base):
    """Why one row of an import was not taken: a reason code (rendered in the operator's language
    in the report) and the column it concerns. No cell values: they may be personal data."""

    __tablename__ = "import_row_errors"

    id: Mapped[BigIntPK]
    run_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("import_runs.id"))
    row_no: Mapped[int]
    column: Mapped[str | None] = mapped_column(sa.String(32))
    code: Mapped[str] = mapped_column(sa.String(32))

    __table_args__ = (sa.UniqueConstraint("run_id", "row_no"),)
