"""The CRM outbox: rows written with the change, delivered per member in order, exactly once.

* ``enqueue`` (called by the event subscribers in ``crm/events.py``, inside the change's
  transaction) holds the row back until the commit, like ``core/audit`` (a savepoint that rolls
  back drops it). Just before the commit the rows are numbered: an upsert of ``crm_member_sync``
  per member, in member-id order, reserves the next ``seq`` values and holds that row's lock until
  the commit, so concurrent changes of one member get increasing numbers in commit order. Taken
  last and in id order, these locks cannot deadlock with the ledger's or anyone's. Repeats of one
  (member, kind) in a transaction collapse into one row: the payload is built when the row is sent.
* ``deliver_next`` claims the oldest due pending row whose member has no earlier pending or dead
  row (``FOR UPDATE SKIP LOCKED``), sends it and records the outcome in the same transaction. The
  row lock is held across the call (bounded by ``LOYALTY_CRM_HTTP_TIMEOUT``): a worker that dies
  mid-call rolls back and the row is sent again under the same idempotency key, which the CRM
  drops. Different members go out in parallel; a member's rows never overtake each other.
* A failure backs off exponentially with jitter; ``Refused`` (the CRM rejected the change) or
  ``crm.max_attempts`` failures make the row ``dead``. A dead row holds back the member's later
  rows until an operator retries or skips it (``flask crm retry | skip``, audited): order is kept
  rather than sending a newer state the CRM would then see overwritten by an older one.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased, sessionmaker

from app import gateways
from app.core import audit, tunables
from app.core.clock import utcnow
from app.core.db import db, driver_execute
from app.core.errors import Conflict, NotFound
from app.core.held_back import HeldBack
from app.core.i18n import _l
from app.crm.models import BLOCKING, CrmMemberSync, CrmOutboxEntry
from app.crm.payloads import Batch, build_change, preload

MAX_ATTEMPTS = tunables.define("crm.max_attempts", 10, "Delivery attempts before a CRM outbox row is dead")
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 3600


def backoff(attempts: int, rng: random.Random | None = None) -> dt.timedelta:
    """Exponential (5 s, 10 s, 20 s… capped at an hour) with jitter: between half and all of it."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return dt.timedelta(seconds=ceiling * (rng or random).uniform(0.5, 1.0))


def _reserve_seqs(counts: dict[int, int]) -> dict[int, int]:
    """Take each member's next ``counts[member]`` numbers; returns each member's first. One upsert
    of ``crm_member_sync`` rows in member-id order (PostgreSQL takes the row locks in that order;
    SQLite, for ``make run``, locks the whole database anyway), holding the locks until the commit."""
    table = CrmMemberSync.__table__
    ordered = sorted(counts)
    if db.dialect == "postgresql":  # the rows as one JSON array: no per-value parameter handling
        member_id = sa.cast(sa.text("r->>0"), sa.BigInteger)
        rows = (
            sa.select(member_id, sa.cast(sa.text("r->>1"), sa.BigInteger))
            .select_from(sa.func.jsonb_array_elements(_json_rows([[m, counts[m]] for m in ordered])).alias("r"))
            .order_by(member_id)
        )
        statement = pg_insert(table).from_select(["member_id", "last_seq"], rows)
    else:
        statement = sqlite_insert(table).values([{"member_id": m, "last_seq": counts[m]} for m in ordered])
    statement = statement.on_conflict_do_update(
        index_elements=["member_id"], set_={"last_seq": table.c.last_seq + statement.excluded.last_seq}
    ).returning(table.c.member_id, table.c.last_seq)
    return {member_id: int(last_seq) - counts[member_id] + 1 for member_id, last_seq in db.session.execute(statement)}


def enqueue(member_id: int, kind: str, refs: dict[str, Any] | None = None) -> None:
    """The member's next outbox row (ids only), written when the unit of work commits (or when it
    reads the outbox first). A savepoint that rolls back takes its rows along."""
    _held_back.hold((member_id, kind, refs or {}))


def enqueue_all(member_ids: Iterable[int], kind: str, refs: dict[str, Any] | None = None) -> None:
    """``enqueue`` for many members at once (a set-based change: a bulk import's chunk)."""
    _held_back.hold_all([(member_id, kind, refs or {}) for member_id in member_ids])


def _release(session: Session, held: list[tuple[int, str, dict[str, Any]]]) -> None:
    """Write the held-back rows: one per (member, kind) except merges, numbered per member under
    the members' sync-row locks taken in id order, the last locks of the transaction; one insert
    (on PostgreSQL the numbering and the insert are one statement)."""
    rows, seen = [], set()
    for member_id, kind, refs in held:
        if kind != "merge" and (member_id, kind) in seen:
            continue
        seen.add((member_id, kind))
        rows.append((member_id, kind, refs))
    if not rows:
        return
    if db.dialect == "postgresql":
        if len(rows) == 1:  # one change of one member: every balance change, the hot path
            _number_and_insert_one(session, *rows[0], utcnow())
        else:
            _number_and_insert(session, rows, Counter(member_id for member_id, _kind, _refs in rows), utcnow())
        return
    counts = Counter(member_id for member_id, _kind, _refs in rows)
    next_seq = _reserve_seqs(counts)
    columns: dict[str, list[Any]] = {"member_id": [], "seq": [], "kind": [], "payload": [], "idempotency_key": []}
    for member_id, kind, refs in rows:
        seq = next_seq[member_id]
        next_seq[member_id] += 1
        for name, value in zip(columns, (member_id, seq, kind, refs, f"loyalty-{member_id}-{seq}"), strict=True):
            columns[name].append(value)
    _insert_rows(session, columns, utcnow())


#: ``_reserve_seqs`` and ``_insert_rows`` as ONE statement (the hot paths — every balance change —
#: save a round trip): the upsert reserves each member's numbers in member-id order (the same lock
#: order), the insert numbers each row from its member's reserved range by its place in the list.
_NUMBER_AND_INSERT = sa.text(
    """
WITH wanted AS (
    SELECT (r->>0)::bigint AS member_id, (r->>1)::bigint AS n FROM jsonb_array_elements(:counts) AS r
), reserved AS (
    INSERT INTO crm_member_sync (member_id, last_seq)
    SELECT member_id, n FROM wanted ORDER BY member_id
    ON CONFLICT (member_id) DO UPDATE SET last_seq = crm_member_sync.last_seq + excluded.last_seq
    RETURNING member_id, last_seq
), fresh AS (
    SELECT (r->>0)::bigint AS member_id, r->>1 AS kind, r->2 AS payload, (r->>3)::bigint AS place,
           (r->>4)::bigint AS n
    FROM jsonb_array_elements(:rows) AS r
)
INSERT INTO crm_outbox (member_id, seq, kind, payload, idempotency_key, status, attempts, next_attempt_at, created_at)
SELECT fresh.member_id, numbered.seq, fresh.kind, fresh.payload,
       'loyalty-' || fresh.member_id || '-' || numbered.seq, 'pending', 0, :now, :now
FROM fresh
JOIN reserved USING (member_id)
CROSS JOIN LATERAL (SELECT reserved.last_seq - fresh.n + 1 + fresh.place AS seq) AS numbered
"""
).bindparams(sa.bindparam("counts", type_=JSONB), sa.bindparam("rows", type_=JSONB))


def _number_and_insert(
    session: Session, rows: list[tuple[int, str, dict[str, Any]]], counts: Counter[int], now: dt.datetime
) -> None:
    ordered = sorted(counts)
    places: Counter[int] = Counter()
    numbered = []
    for member_id, kind, refs in rows:
        numbered.append([member_id, kind, refs, places[member_id], counts[member_id]])
        places[member_id] += 1
    session.execute(_NUMBER_AND_INSERT, {"counts": [[m, counts[m]] for m in ordered], "rows": numbered, "now": now})


#: ``_NUMBER_AND_INSERT`` for one row of one member, with plain parameters (member, kind, payload,
#: now), sent on the session's driver connection: no JSON rows to build and unpack, no SQLAlchemy
#: execute (its compile-cache look-up, execution context and result wrapping cost more client CPU
#: than the statement itself). Same lock (the member's sync row, the transaction's last), same seq.
_NUMBER_AND_INSERT_ONE = """
WITH reserved AS (
    INSERT INTO crm_member_sync (member_id, last_seq) VALUES (%s, 1)
    ON CONFLICT (member_id) DO UPDATE SET last_seq = crm_member_sync.last_seq + 1
    RETURNING member_id, last_seq
)
INSERT INTO crm_outbox (member_id, seq, kind, payload, idempotency_key, status, attempts, next_attempt_at, created_at)
SELECT member_id, last_seq, %s, %s::jsonb, 'loyalty-' || member_id || '-' || last_seq, 'pending', 0, %s, %s
FROM reserved
"""


def _number_and_insert_one(session: Session, member_id: int, kind: str, refs: dict[str, Any], now: dt.datetime) -> None:
    values = (member_id, kind, json.dumps(refs) if refs else "{}", now, now)
    driver_execute(_NUMBER_AND_INSERT_ONE, values, session)


def _insert_rows(session: Session, columns: dict[str, list[Any]], now: dt.datetime) -> None:
    """The new pending rows: on PostgreSQL one ``INSERT … SELECT unnest(…)`` however many (a bulk
    import's chunk has thousands), elsewhere an executemany."""
    table = CrmOutboxEntry.__table__
    fixed = {"status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
    if db.dialect != "postgresql":
        rows = [dict(zip(columns, values, strict=True)) | fixed for values in zip(*columns.values(), strict=True)]
        session.execute(sa.insert(table), rows)
        return
    element = sa.func.jsonb_array_elements(_json_rows([list(values) for values in zip(*columns.values(), strict=True)]))
    select = sa.select(
        sa.cast(sa.text("r->>0"), sa.BigInteger),
        sa.cast(sa.text("r->>1"), sa.BigInteger),
        sa.text("r->>2"),
        sa.text("r->3"),
        sa.text("r->>4"),
        *(sa.literal(value, table.c[name].type) for name, value in fixed.items()),
    ).select_from(element.alias("r"))
    session.execute(sa.insert(table).from_select([*columns, *fixed], select))


def _json_rows(rows: list[list[Any]]) -> sa.ColumnElement[Any]:
    """A JSON array of rows as one parameter (thousands of values bound as one string)."""
    return sa.cast(sa.literal(json.dumps(rows), sa.Text), JSONB)


_held_back = HeldBack("crm_outbox_held_back", _release, (CrmOutboxEntry, CrmMemberSync))


def init_session_factory(factory: sessionmaker) -> None:
    _held_back.listen(factory)


def _claim_heads(now: dt.datetime, limit: int) -> list[CrmOutboxEntry]:
    """Up to ``limit`` due rows, each the head of its member (so at most one per member), locked;
    rows other workers hold are skipped."""
    earlier = aliased(CrmOutboxEntry)
    blocked = (
        sa.select(earlier.id)
        .where(
            earlier.member_id == CrmOutboxEntry.member_id,
            earlier.seq < CrmOutboxEntry.seq,
            earlier.status.in_(BLOCKING),
        )
        .exists()
    )
    return list(
        db.session.scalars(
            sa.select(CrmOutboxEntry)
            .where(CrmOutboxEntry.status == "pending", CrmOutboxEntry.next_attempt_at <= now, ~blocked)
            .order_by(CrmOutboxEntry.next_attempt_at, CrmOutboxEntry.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=CrmOutboxEntry)
            .execution_options(populate_existing=True)
        )
    )


@dataclass(frozen=True)
class Attempt:
    entry_id: int
    member_id: int
    seq: int
    outcome: str  # delivered, retry, dead


def _send(entry: CrmOutboxEntry, batch: Batch, now: dt.datetime) -> dict[str, Any]:
    """Send one row; returns the row's new values (written for the whole batch at once)."""
    values: dict[str, Any] = {"id": entry.id, "attempts": entry.attempts + 1}
    try:
        gateways.crm().deliver(build_change(entry, batch))
    except gateways.Refused as exc:
        values.update(status="dead", last_error=f"refused {exc.code}: {exc.message}"[:255])
    except gateways.GatewayError as exc:
        values["last_error"] = f"{type(exc).__name__} {exc.code or ''}: {exc.message}"[:255]
        if values["attempts"] >= MAX_ATTEMPTS.value():
            values["status"] = "dead"
        else:
            values["next_attempt_at"] = now + backoff(values["attempts"])
    else:
        values.update(status="delivered", delivered_at=now, last_error=None)
    return values


def deliver_batch(limit: int = 1, now: dt.datetime | None = None, *, max_seconds: float = 10.0) -> list[Attempt]:
    """Claim up to ``limit`` member heads and send them one by one; the caller commits once.

    The batch's rows belong to different members, so sending them in sequence keeps every
    member's order; their locks are held until the commit (a dead worker's batch is resent under
    the same keys). After ``max_seconds`` the rest of the batch is left unsent (a slow CRM must not
    keep a transaction open for long). The outcomes are written in one executemany.
    """
    now = now or utcnow()
    entries = _claim_heads(now, limit)
    if not entries:
        return []
    batch = preload([entry.member_id for entry in entries])
    deadline = time.monotonic() + max_seconds
    outcomes = []
    for entry in entries:
        if outcomes and time.monotonic() > deadline:
            entries = entries[: len(outcomes)]
            break
        outcomes.append(_send(entry, batch, now))
    for values in outcomes:
        values.setdefault("status", "pending")
    db.session.execute(sa.update(CrmOutboxEntry), outcomes)
    delivered = [e.member_id for e, v in zip(entries, outcomes, strict=True) if v["status"] == "delivered"]
    if delivered:
        db.session.execute(
            sa.update(CrmMemberSync).where(CrmMemberSync.member_id.in_(delivered)).values(last_delivered_at=now)
        )
    return [
        Attempt(e.id, e.member_id, e.seq, {"pending": "retry"}.get(v["status"], v["status"]))
        for e, v in zip(entries, outcomes, strict=True)
    ]


def deliver_next(now: dt.datetime | None = None) -> Attempt | None:
    """Claim one deliverable row and send it; None when nothing is due. The caller commits."""
    attempts = deliver_batch(1, now)
    return attempts[0] if attempts else None


# --- operators ----------------------------------------------------------------------------------


def _entry(entry_id: int) -> CrmOutboxEntry:
    entry = db.session.get(CrmOutboxEntry, entry_id, with_for_update=True)
    if entry is None:
        raise NotFound(_l("No such outbox row."))
    return entry


def retry(entry_id: int, *, actor: tuple[str, str | int], now: dt.datetime | None = None) -> CrmOutboxEntry:
    """Send a dead row again (from a fresh count of attempts); audited."""
    entry = _entry(entry_id)
    if entry.status != "dead":
        raise Conflict(_l("Only a dead outbox row can be retried."))
    entry.status, entry.attempts, entry.next_attempt_at = "pending", 0, now or utcnow()
    audit.record(actor=actor, action="crm.outbox_retried", subject=("crm_outbox", entry.id))
    db.session.flush()
    return entry


def skip(entry_id: int, *, reason: str, actor: tuple[str, str | int]) -> CrmOutboxEntry:
    """Give up on a dead or pending row so the member's later rows go out; audited with the reason."""
    entry = _entry(entry_id)
    if entry.status not in BLOCKING:
        raise Conflict(_l("Only a pending or dead outbox row can be skipped."))
    entry.status, entry.last_error = "skipped", f"skipped: {reason}"[:255]
    audit.record(actor=actor, action="crm.outbox_skipped", subject=("crm_outbox", entry.id), reason=reason)
    db.session.flush()
    return entry


def entries(status: str | None = None, limit: int = 50) -> list[CrmOutboxEntry]:
    query = sa.select(CrmOutboxEntry).order_by(CrmOutboxEntry.id.desc()).limit(limit)
    if status:
        query = query.where(CrmOutboxEntry.status == status)
    return list(db.session.scalars(query))


# --- sync state ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncState:
    last_delivered_at: dt.datetime | None
    pending: int
    dead: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_delivered_at": self.last_delivered_at.isoformat() if self.last_delivered_at else None,
            "pending": self.pending,
            "dead": self.dead,
        }


def sync_state(member_id: int) -> SyncState:
    """What the CRM has of this member: the last delivery, rows waiting, rows dead."""
    counts = dict(
        db.session.execute(
            sa.select(CrmOutboxEntry.status, sa.func.count())
            .where(CrmOutboxEntry.member_id == member_id, CrmOutboxEntry.status.in_(BLOCKING))
            .group_by(CrmOutboxEntry.status)
        ).all()
    )
    last = db.session.scalar(sa.select(CrmMemberSync.last_delivered_at).where(CrmMemberSync.member_id == member_id))
    return SyncState(last, int(counts.get("pending", 0)), int(counts.get("dead", 0)))


def totals() -> dict[str, int]:
    """Rows waiting to go to the CRM and rows given up on, over the whole outbox (partial index)."""
    counts = dict(
        db.session.execute(
            sa.select(CrmOutboxEntry.status, sa.func.count())
            .where(CrmOutboxEntry.status.in_(BLOCKING))
            .group_by(CrmOutboxEntry.status)
        ).all()
    )
    return {status: int(counts.get(status, 0)) for status in BLOCKING}
