"""Taking back points when the business event behind them is undone (SPEC §3 "Reversal").

* an order cancellation reverses every earning of that order in full;
* a (partial) refund reverses amount-based earnings in proportion to what was refunded of the
  amount each was computed from, cumulatively, so several partial refunds never take back more
  than was given.

Idempotency keys name the undoing business reference (the cancelled order, the refund number),
so a resent DMS event never reverses twice. The earn key stays taken: a resent earning event for
the same order or repair order cannot earn again after a reversal (no refund → re-earn loop).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.points import ledger
from app.points.models import EarningRule, PointEntry, PointUndo
from app.tiers import policy as tiers


def lock_reference(event_type: str, ref: str) -> None:
    """Serialise earning and undoing of one business reference until the transaction ends."""
    if db.dialect == "postgresql":
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"{event_type}:{ref}"))))


def undo(
    kind: str,
    event_type: str,
    ref: str,
    *,
    undo_ref: str,
    source_type: str,
    source_event_id: int | None = None,
    refunded: dict[str, int] | None = None,
    undone_on: dt.date | None = None,
) -> list[PointEntry]:
    """Record the cancellation (``full``) or refund (``proportional``) and reverse what was earned."""
    lock_reference(event_type, ref)
    insert_if_absent(
        PointUndo,
        {
            "event_type": event_type,
            "ref": ref,
            "undo_ref": undo_ref,
            "kind": kind,
            "refunded": refunded,
            "source_type": source_type,
            "source_event_id": source_event_id,
            "undone_on": undone_on,
            "created_at": utcnow(),
        },
        conflict_columns=("undo_ref",),
    )
    return _apply(db.session.scalars(sa.select(PointUndo).where(PointUndo.undo_ref == undo_ref)).one())


def _apply(row: PointUndo) -> list[PointEntry]:
    source = {"undo_ref": row.undo_ref, "source_type": row.source_type, "source_event_id": row.source_event_id}
    if row.kind == "full":
        return reverse_in_full(row.event_type, row.ref, **source)
    return reverse_in_proportion(row.event_type, row.ref, row.refunded or {}, **source)


def undone_on(event_type: str, ref: str) -> dt.date | None:
    """The date ``(event_type, ref)`` was cancelled in full, if it was."""
    return db.session.scalar(
        sa.select(PointUndo.undone_on)
        .where(PointUndo.event_type == event_type, PointUndo.ref == ref, PointUndo.kind == "full")
        .order_by(PointUndo.id)
        .limit(1)
    )


def reapply_undos(event_type: str, ref: str) -> list[PointEntry]:
    """After crediting ``(event_type, ref)``: undo it again for every cancellation or refund that
    came first. The caller took ``lock_reference`` before crediting."""
    reversals: list[PointEntry] = []
    undos = db.session.scalars(
        sa.select(PointUndo).where(PointUndo.event_type == event_type, PointUndo.ref == ref).order_by(PointUndo.id)
    )
    for row in undos:
        reversals += _apply(row)
    return reversals


def earnings_of(event_type: str, ref: str) -> list[PointEntry]:
    return list(
        db.session.scalars(
            sa.select(PointEntry)
            .where(PointEntry.source_type == event_type, PointEntry.source_ref == ref, PointEntry.kind == "earn")
            .order_by(PointEntry.id)
        )
    )


def _after_tier_reversal(member_ids: set[int]) -> None:
    for member_id in member_ids:
        account = ledger.lock_account(member_id)
        tiers.apply_reversal(member_id, account.tier_points)


def reverse_in_full(
    event_type: str, ref: str, *, undo_ref: str, source_type: str, source_event_id: int | None = None
) -> list[PointEntry]:
    """Reverse whatever is left of every earning of ``(event_type, ref)``."""
    reversals, tier_members = [], set()
    for original in earnings_of(event_type, ref):
        left = original.points - ledger.reversed_points(original.id)
        if left <= 0:
            continue
        entry, new = ledger.reverse(
            original,
            left,
            idempotency_key=f"reverse:{original.id}:{undo_ref}",
            source_type=source_type,
            source_event_id=source_event_id,
        )
        reversals.append(entry)
        if new and original.currency == "tier":
            tier_members.add(original.member_id)
    _after_tier_reversal(tier_members)
    return reversals


def _formula_attribute(original: PointEntry) -> str | None:
    rule = db.session.scalar(
        sa.select(EarningRule).where(
            EarningRule.rule_set_id == original.rule_set_id, EarningRule.code == original.rule_code
        )
    )
    return rule.formula.get("attribute") if rule is not None else None


def _refunded_so_far(original_id: int) -> int:
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointEntry.basis_fen), 0)).where(
            PointEntry.reverses_entry_id == original_id
        )
    )
    return int(total)


def reverse_in_proportion(
    event_type: str,
    ref: str,
    refunded: dict[str, int],
    *,
    undo_ref: str,
    source_type: str,
    source_event_id: int | None = None,
) -> list[PointEntry]:
    """Reverse amount-based earnings by the refunded share of their basis (rounded half up)."""
    reversals, tier_members = [], set()
    for original in earnings_of(event_type, ref):
        attribute = _formula_attribute(original)
        if not original.basis_fen or attribute not in refunded or refunded[attribute] <= 0:
            continue
        key = f"reverse:{original.id}:{undo_ref}"
        if db.session.scalar(sa.select(PointEntry.id).where(PointEntry.idempotency_key == key)):
            continue
        refunded_total = min(original.basis_fen, _refunded_so_far(original.id) + refunded[attribute])
        target = (original.points * refunded_total * 2 + original.basis_fen) // (2 * original.basis_fen)
        points = min(target, original.points) - ledger.reversed_points(original.id)
        if points <= 0:
            continue
        entry, new = ledger.reverse(
            original,
            points,
            idempotency_key=key,
            source_type=source_type,
            source_event_id=source_event_id,
            basis_fen=refunded[attribute],  # cumulative refunds are summed from these
        )
        reversals.append(entry)
        if new and original.currency == "tier":
            tier_members.add(original.member_id)
    _after_tier_reversal(tier_members)
    return reversals
