"""The review queue: flagged referrals (bursts, rings, shared devices) wait for a supervisor, whose
decision pays the held rewards or refuses them. Every read and decision is audited."""

from __future__ import annotations

import sqlalchemy as sa

from app.core import audit
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict, NotFound
from app.core.i18n import _l
from app.referrals import rewards
from app.referrals.models import Referral

DECISIONS = ("approve", "reject")


class AlreadyDecided(Conflict):
    code = "already_decided"
    default_message = _l("This referral is not waiting for a review.")


def pending(actor: tuple[str, str], *, limit: int = 100) -> list[Referral]:
    rows = list(
        db.session.scalars(
            sa.select(Referral).where(Referral.review == "pending").order_by(Referral.attributed_at).limit(limit)
        )
    )
    audit.record(
        actor=actor,
        action="referral.review_queue.read",
        subject=("referral_queue", "pending"),
        details={"referral_ids": [r.id for r in rows]},
    )
    return rows


def decide(referral_id: int, decision: str, *, actor: tuple[str, str], reason: str) -> Referral:
    referral = db.session.scalar(
        sa.select(Referral)
        .where(Referral.id == referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if referral is None:
        raise NotFound()
    if referral.review != "pending":
        raise AlreadyDecided()
    referral.review = "approved" if decision == "approve" else "rejected"
    referral.reviewed_by, referral.reviewed_at = actor[1], utcnow()
    if decision == "approve":
        rewards.pay_after_approval(referral)
    else:
        referral.reward_status = "rejected"
    audit.record(
        actor=actor,
        action=f"referral.review.{decision}",
        subject=("referral", referral.id),
        reason=reason,
        details={"flags": list(referral.flags), "reward_status": referral.reward_status},
    )
    return referral
