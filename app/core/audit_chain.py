"""The audit log's hash chain: every row carries ``chain_seq``, ``prev_hash`` and ``row_hash``.

``row_hash`` is the SHA-256 of ``canonical(...)``: a JSON array of the sequence number, the previous
row's hash and the row's fields. On PostgreSQL a BEFORE INSERT trigger
(``loyalty_audit_chain``, migration e1) assigns them under an advisory lock, serially whatever the
number of concurrent writers; the SQL function ``loyalty_audit_canonical`` builds the same text as
``canonical`` here (a test holds them equal). On SQLite (``make run``) the flush assigns them in
Python: SQLite has one writer at a time (``BEGIN IMMEDIATE``), so reading the tail is safe.

``verify`` walks the chain and reports the first broken link: an edited row no longer matches its
hash, a deleted row leaves a gap and a ``prev_hash`` that points nowhere. Deleting the newest rows
leaves a shorter valid chain; the head printed by ``flask audit verify`` is what to keep elsewhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from app.core.models import AuditEntry

GENESIS_HASH = "0" * 64
#: ``pg_advisory_xact_lock(hashtext(CHAIN_LOCK))`` in the trigger serializes the chain's writers.
CHAIN_LOCK = "audit_log:chain"
PAGE = 1000


def utc_text(moment: dt.datetime) -> str:
    """The timestamp as hashed: UTC, microseconds (``to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')``)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    *,
    chain_seq: int,
    prev_hash: str,
    occurred_at: dt.datetime,
    actor_type: str,
    actor_id: str,
    action: str,
    subject_type: str,
    subject_id: str,
    reason: str | None,
    details_text: str | None,
    request_id: str | None,
) -> str:
    """The text a row's hash covers; ``details_text`` is the details as the database stores them
    (``details::text``). PostgreSQL's ``json_build_array(...)::text`` renders exactly this."""
    fields = [chain_seq, prev_hash, utc_text(occurred_at), actor_type, actor_id, action, subject_type, subject_id]
    return json.dumps([*fields, reason, details_text, request_id], ensure_ascii=False)


def row_hash(**fields: Any) -> str:
    return hashlib.sha256(canonical(**fields).encode()).hexdigest()


# --- SQLite: the chain assigned at flush -----------------------------------------------------------


def _assign_in_python(session: Session, _context: Any, _instances: Any) -> None:
    """Chain the audit rows this flush inserts (SQLite only; PostgreSQL's trigger does it)."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        return
    if not any(isinstance(o, AuditEntry) for o in session.new):
        return
    to_text = AuditEntry.__table__.c.details.type.dialect_impl(dialect).bind_processor(dialect)
    tail = session.execute(
        sa.select(AuditEntry.chain_seq, AuditEntry.row_hash).order_by(AuditEntry.chain_seq.desc()).limit(1)
    ).first()
    # Collected after that query: reading the audit log releases rows ``audit.record`` held back
    # into the session (a request that audits a refused read and a change has both).
    new = sorted((o for o in session.new if isinstance(o, AuditEntry)), key=lambda o: sa.inspect(o).insert_order)
    seq, previous = (tail[0], tail[1]) if tail else (0, GENESIS_HASH)
    for entry in new:
        seq += 1
        entry.chain_seq, entry.prev_hash = seq, previous
        entry.row_hash = previous = row_hash(
            **_fields(entry, details_text=to_text(entry.details) if to_text else entry.details)
        )


def _fields(entry: Any, *, details_text: str | None) -> dict[str, Any]:
    return {
        "chain_seq": entry.chain_seq,
        "prev_hash": entry.prev_hash,
        "occurred_at": entry.occurred_at,
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "reason": entry.reason,
        "details_text": details_text,
        "request_id": entry.request_id,
    }


def init_session_factory(factory: sessionmaker) -> None:
    """Listen to the factory's flushes (idempotent: apps share the one factory)."""
    if not event.contains(factory, "before_flush", _assign_in_python):
        event.listen(factory, "before_flush", _assign_in_python)


# --- verification ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenLink:
    chain_seq: int
    problem: str  # "gap", "prev_hash", "row_hash"
    expected: str
    found: str


@dataclass(frozen=True)
class Verdict:
    rows: int
    head_seq: int | None
    head_hash: str | None
    broken: BrokenLink | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _pages(session: Session, from_seq: int) -> Iterator[list[Any]]:
    columns = [c for c in AuditEntry.__table__.c if c.name not in {"id", "details"}]
    select = sa.select(*columns, sa.cast(AuditEntry.__table__.c.details, sa.Text).label("details_text"))
    after = from_seq - 1
    while True:
        page = session.execute(
            select.where(AuditEntry.chain_seq > after).order_by(AuditEntry.chain_seq).limit(PAGE)
        ).all()
        if not page:
            return
        yield page
        after = page[-1].chain_seq


def verify(session: Session, *, from_seq: int = 1) -> Verdict:
    """Walk the chain from ``from_seq`` (keyset pages) and stop at the first broken link."""
    expected_seq, expected_prev = from_seq, GENESIS_HASH
    if from_seq > 1:
        anchor = session.scalar(sa.select(AuditEntry.row_hash).where(AuditEntry.chain_seq == from_seq - 1))
        if anchor is None:
            return Verdict(0, None, None, BrokenLink(from_seq - 1, "gap", f"seq {from_seq - 1}", "no such row"))
        expected_prev = anchor
    rows = 0
    for page in _pages(session, from_seq):
        for row in page:
            broken = _check(row, expected_seq, expected_prev)
            if broken is not None:
                return Verdict(rows, expected_seq - 1 if rows else None, expected_prev, broken)
            rows += 1
            expected_seq, expected_prev = row.chain_seq + 1, row.row_hash
    return Verdict(rows, expected_seq - 1 if rows else None, expected_prev if rows else None, None)


def _check(row: Any, expected_seq: int, expected_prev: str) -> BrokenLink | None:
    if row.chain_seq != expected_seq:
        return BrokenLink(expected_seq, "gap", f"seq {expected_seq}", f"seq {row.chain_seq}")
    if row.prev_hash != expected_prev:
        return BrokenLink(row.chain_seq, "prev_hash", expected_prev, row.prev_hash)
    recomputed = row_hash(**_fields(row, details_text=row.details_text))
    if row.row_hash != recomputed:
        return BrokenLink(row.chain_seq, "row_hash", recomputed, row.row_hash)
    return None
