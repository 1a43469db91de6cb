"""Nightly expiry and hourly release of pending points.

Expiry is set-based on PostgreSQL: each chunk is two statements. The first locks the accounts of
the next members with due lots (``SKIP LOCKED``: a member busy spending right now is taken next
night); the second, with a snapshot taken after those locks, writes one ``expire`` entry per
member, zeroes the lots and moves the balances. Accounts are locked
before lots, the same order as every ledger write, so expiry never deadlocks with a spend.
Chunks walk members in id order (keyset), so each chunk starts where the last one stopped.

Policies (program setting ``points.expiry_policy``): ``per_lot`` — a lot expires at the end of the
month 24 months after it was earned; ``inactivity`` — all lots of a member expire once the account
has had no earn or spend for 24 months.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.core import events
from app.core.clock import utcnow
from app.core.db import db
from app.jobs import job
from app.points import ledger
from app.points.events import BalanceChanged
from app.points.models import PointAccount, PointEntry, PointLot

CHUNK_MEMBERS = 5000

#: Step 1 of a chunk: lock the accounts of the next members with due lots.
_PG_LOCK = """
WITH due_members AS (
    {due_members}
), locked AS (
    SELECT a.member_id, a.ctid AS row_id FROM point_accounts a JOIN due_members d ON d.member_id = a.member_id
    ORDER BY a.member_id
    FOR UPDATE OF a SKIP LOCKED
)
SELECT (SELECT max(member_id) FROM due_members) AS last_member,
       coalesce((SELECT array_agg(member_id ORDER BY member_id) FROM locked), '{{}}') AS member_ids,
       coalesce((SELECT array_agg(row_id::text ORDER BY member_id) FROM locked), '{{}}') AS row_ids
"""

#: Step 2: expire the locked members' due lots. A separate statement on purpose: under READ
#: COMMITTED it takes its snapshot after the locks are held, so it sees every spend that committed
#: before them (in one statement, `due` would read lots as they were when the statement began).
_PG_EXPIRE = """
WITH locked AS (
    SELECT unnest(CAST(:member_ids AS bigint[])) AS member_id, unnest(CAST(:row_ids AS tid[])) AS row_id
), due AS (
    -- No FOR UPDATE here: every writer of a member's lots holds that member's account lock,
    -- which step 1 took; row-locking a million lots would write each tuple twice.
    SELECT l.id, l.member_id, l.remaining FROM point_lots l JOIN locked k ON k.member_id = l.member_id
    WHERE l.status = 'available' AND l.remaining > 0 {lot_due}
), totals AS (
    SELECT member_id, sum(remaining) AS points FROM due GROUP BY member_id
), entries AS (
    INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                               occurred_at, created_at)
    SELECT member_id, 'reward', 'expire', -points, 'expire:' || member_id || ':' || :run_key, 'expiry', 'oem',
           :now, :now
    FROM totals
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, member_id, -points AS points
), expired_lots AS (
    -- Found again through the member index from the new entries (same conditions as `due`):
    -- joining `due` by lot id made the planner hash the whole lots table on every chunk.
    UPDATE point_lots l
    SET expired_points = l.remaining, remaining = 0, status = 'expired', expired_by_entry_id = e.id
    FROM entries e
    WHERE l.member_id = e.member_id AND l.status = 'available' AND l.remaining > 0 {lot_due}
    RETURNING l.id
), accounts AS (
    -- By the row addresses step 1 found (stable: those rows are locked by us).
    UPDATE point_accounts a
    SET reward_available = a.reward_available - e.points,
        lifetime_expired = a.lifetime_expired + e.points,
        updated_at = :now
    FROM entries e JOIN locked k ON k.member_id = e.member_id
    WHERE a.ctid = k.row_id
    RETURNING a.member_id
)
SELECT (SELECT count(*) FROM accounts) AS members,
       (SELECT count(*) FROM expired_lots) AS lots,
       (SELECT coalesce(sum(points), 0) FROM entries) AS points
"""

_DUE_MEMBERS = {
    "per_lot": (
        "SELECT DISTINCT member_id FROM point_lots "
        "WHERE status = 'available' AND remaining > 0 AND expires_at <= :now AND member_id > :after "
        "ORDER BY member_id LIMIT :chunk",
        "AND l.expires_at <= :now",
    ),
    "inactivity": (
        "SELECT member_id FROM point_accounts "
        "WHERE last_activity_at <= :idle_since AND reward_available > 0 AND member_id > :after "
        "ORDER BY member_id LIMIT :chunk",
        "",
    ),
}


@dataclass
class ExpiryRun:
    members: int = 0
    lots: int = 0
    points: int = 0
    chunks: int = 0


def _idle_since(now: dt.datetime) -> dt.datetime:
    months = ledger.EXPIRY_MONTHS.value()
    index = now.year * 12 + now.month - 1 - months
    return now.replace(year=index // 12, month=index % 12 + 1, day=min(now.day, 28))


def expire_due(
    now: dt.datetime | None = None, *, chunk: int = CHUNK_MEMBERS, commit_each_chunk: bool = False
) -> ExpiryRun:
    """Expire every due lot (see the module docstring); returns what was expired."""
    now = now or utcnow()
    policy = ledger.EXPIRY_POLICY.value()
    run_key = now.strftime("%Y%m%dT%H%M%S")
    if db.dialect != "postgresql":
        return _expire_portable(now, policy, run_key)
    due_members, lot_due = _DUE_MEMBERS[policy]
    lock = sa.text(_PG_LOCK.format(due_members=due_members))
    expire = sa.text(_PG_EXPIRE.format(lot_due=lot_due))
    run, after = ExpiryRun(), 0
    while True:
        # Per-member index lookups are this batch's access pattern; with the default random_page_cost
        # (tuned for spinning disks) the planner prefers scanning all lots on every chunk instead.
        db.session.execute(sa.text("SET LOCAL random_page_cost = 1.1"))
        locked = db.session.execute(
            lock, {"now": now, "after": after, "chunk": chunk, "idle_since": _idle_since(now)}
        ).one()
        if locked.last_member is None:
            break
        row = db.session.execute(
            expire,
            {"now": now, "run_key": run_key, "member_ids": locked.member_ids, "row_ids": locked.row_ids},
        ).one()
        run.chunks += 1
        run.members += row.members
        run.lots += row.lots
        run.points += int(row.points)
        after = locked.last_member
        if commit_each_chunk:
            db.session.commit()  # a batch job's edge is each chunk: locks are held briefly
    return run


def _expire_portable(now: dt.datetime, policy: str, run_key: str) -> ExpiryRun:
    """The same effect for the embedded SQLite of ``make run`` (one writer; no SKIP LOCKED there)."""
    run = ExpiryRun(chunks=1)
    if policy == "per_lot":
        member_ids = db.session.scalars(
            sa.select(PointLot.member_id)
            .where(PointLot.status == "available", PointLot.remaining > 0, PointLot.expires_at <= now)
            .distinct()
        ).all()
    else:
        member_ids = db.session.scalars(
            sa.select(PointAccount.member_id).where(
                PointAccount.last_activity_at <= _idle_since(now), PointAccount.reward_available > 0
            )
        ).all()
    for member_id in member_ids:
        account = ledger.lock_account(member_id)
        query = sa.select(PointLot).where(
            PointLot.member_id == member_id, PointLot.status == "available", PointLot.remaining > 0
        )
        if policy == "per_lot":
            query = query.where(PointLot.expires_at <= now)
        lots = list(db.session.scalars(query))
        total = sum(lot.remaining for lot in lots)
        if not total:
            continue
        entry = PointEntry(
            member_id=member_id,
            currency="reward",
            kind="expire",
            points=-total,
            idempotency_key=f"expire:{member_id}:{run_key}",
            source_type="expiry",
            funder="oem",
            occurred_at=now,
            created_at=now,
        )
        db.session.add(entry)
        db.session.flush()
        for lot in lots:
            lot.expired_points, lot.remaining, lot.status = lot.remaining, 0, "expired"
            lot.expired_by_entry_id = entry.id
        account.reward_available -= total
        account.lifetime_expired += total
        run.members += 1
        run.lots += len(lots)
        run.points += total
    db.session.flush()
    return run


#: Pending release, step 1: lock the accounts of the next members (lowest ids first) with due
#: pending lots, in member-id order (a member busy spending is waited for, not skipped: the release
#: is due now, and the next run would start from the same lowest ids anyway).
_PG_RELEASE_LOCK = sa.text("""
WITH due_members AS (
    SELECT DISTINCT member_id FROM point_lots
    WHERE status = 'pending' AND available_at <= :now
    ORDER BY member_id LIMIT :limit
), locked AS (
    SELECT a.member_id FROM point_accounts a JOIN due_members d ON d.member_id = a.member_id
    ORDER BY a.member_id
    FOR UPDATE OF a
)
SELECT coalesce((SELECT array_agg(member_id ORDER BY member_id) FROM due_members), '{}') AS due,
       coalesce((SELECT array_agg(member_id ORDER BY member_id) FROM locked), '{}') AS locked
""")

#: Step 2 (its own snapshot, taken after the locks): ``undoing.release_lots`` for every locked
#: member at once. Each member's due lots in id order pay off the account's debt first (a running
#: sum of the lots before: ``make_available``), with an allocation row per lot that paid; the lots
#: become available (depleted if the debt took all) and the account moves its pending points to
#: available. No lot lock: every writer of a member's lots holds the account lock taken in step 1.
_PG_RELEASE = sa.text("""
WITH due AS (
    SELECT l.id, l.member_id, l.entry_id, l.remaining,
           least(l.remaining, greatest(0, a.reward_debt - coalesce(sum(l.remaining) OVER (
               PARTITION BY l.member_id ORDER BY l.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS paid
    FROM point_lots l JOIN point_accounts a ON a.member_id = l.member_id
    WHERE l.member_id = ANY(CAST(:member_ids AS bigint[])) AND l.status = 'pending' AND l.available_at <= :now
), lots AS (
    UPDATE point_lots l
    SET remaining = d.remaining - d.paid,
        status = CASE WHEN d.remaining - d.paid > 0 THEN 'available' ELSE 'depleted' END
    FROM due d WHERE l.id = d.id
), allocations AS (
    INSERT INTO point_allocations (entry_id, lot_id, points)
    SELECT entry_id, id, -paid FROM due WHERE paid > 0
), totals AS (
    SELECT member_id, sum(remaining) AS points, sum(paid) AS paid FROM due GROUP BY member_id
), accounts AS (
    UPDATE point_accounts a
    SET reward_pending = a.reward_pending - t.points, reward_available = a.reward_available + t.points,
        reward_debt = a.reward_debt - t.paid, updated_at = :now
    FROM totals t WHERE a.member_id = t.member_id
)
SELECT member_id, points FROM totals ORDER BY member_id
""")


def release_due(now: dt.datetime | None = None, *, limit: int = 1000) -> int:
    """Make pending lots whose lock period ended spendable; returns how many members were touched
    (at most ``limit``: the job calls again until none are left). Set-based on PostgreSQL (the
    same effects as ``ledger.release_lots`` member by member, which SQLite keeps)."""
    now = now or utcnow()
    if db.dialect == "postgresql":
        return _release_due_pg(now, limit)
    member_ids = db.session.scalars(
        sa.select(PointLot.member_id)
        .where(PointLot.status == "pending", PointLot.available_at <= now)
        .distinct()
        .limit(limit)
    ).all()
    for member_id in member_ids:
        ledger.release_lots(member_id, ("pending",), now=now)
    return len(member_ids)


def _release_due_pg(now: dt.datetime, limit: int) -> int:
    db.session.flush()
    row = db.session.execute(_PG_RELEASE_LOCK, {"now": now, "limit": limit}).one()
    if not row.due:
        return 0
    released = db.session.execute(_PG_RELEASE, {"now": now, "member_ids": list(row.locked)}).all()
    _expire_loaded(set(row.locked))
    for member_id, points in released:
        if points:
            events.publish(BalanceChanged(member_id))  # as ``ledger.release_lots``: the CRM outbox row
    for member_id in sorted(set(row.due) - set(row.locked)):  # no account yet: the ledger creates it
        ledger.release_lots(member_id, ("pending",), now=now)
    return len(row.due)


def _expire_loaded(member_ids: set[int]) -> None:
    """Objects of these members' accounts and lots this session loaded before a Core statement
    wrote them: read again on next access."""
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, PointAccount | PointLot) and obj.member_id in member_ids:
            db.session.expire(obj)


@job("periodic", timeout=3600)
def expire_due_lots() -> dict[str, int]:
    """Nightly: expire due lots, committing chunk by chunk."""
    run = expire_due(commit_each_chunk=True)
    return {"members": run.members, "lots": run.lots, "points": run.points, "chunks": run.chunks}


@job("periodic", timeout=1800)
def release_due_pending() -> int:
    """Hourly: release pending points whose lock period has passed."""
    total = 0
    while True:
        touched = release_due()
        db.session.commit()
        total += touched
        if touched == 0:
            return total
