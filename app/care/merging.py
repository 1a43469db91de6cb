"""Care in a member merge (``members.merging``).

Notification history, callback tasks and subscribe requests move to the survivor.
Preferences: the survivor's choice wins per category; the merged member's moves only for a category
the survivor never chose. Subscribe grants (the merged member's WeChat identities now belong to the
survivor): a template the survivor has no grant for moves, one it has adds the merged member's
counts to the survivor's. The merged member's current lifecycle stage row is dropped (the nightly
pass stages the survivor again); its lifecycle history (append-only) stays with it. A callback
task for a reason and period the survivor already has stays with the merged member (unique key)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.care.models import (
    CallbackTask,
    MemberLifecycle,
    Notification,
    NotificationPreference,
    SubscribeGrant,
    SubscribeRequest,
)
from app.core.clock import utcnow
from app.core.db import db
from app.members.merging import move_rows, participant
from app.members.models import Member


def _add_grants(survivor: Member, merged: Member) -> int:
    """Grants of a template both members have: the survivor's counts take the merged member's."""
    theirs = db.session.scalars(
        sa.select(SubscribeGrant).where(SubscribeGrant.member_id == merged.id).with_for_update()
    ).all()
    added = 0
    for grant in theirs:
        ours = db.session.scalar(
            sa.select(SubscribeGrant)
            .where(SubscribeGrant.member_id == survivor.id, SubscribeGrant.template_id == grant.template_id)
            .with_for_update()
        )
        if ours is None:
            continue
        ours.available += grant.available
        ours.accepted_total += grant.accepted_total
        ours.used_total += grant.used_total
        ours.updated_at = utcnow()
        grant.available = 0
        added += 1
    db.session.flush()
    return added


@participant("care", order=80)
def move_care(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    lifecycle_dropped = db.session.execute(sa.delete(MemberLifecycle).where(MemberLifecycle.member_id == merged.id))
    return {
        "notifications": move_rows(Notification, survivor, merged),
        "preferences": move_rows(NotificationPreference, survivor, merged, unless_survivor_has=("category",)),
        "grants_added": _add_grants(survivor, merged),
        "grants": move_rows(SubscribeGrant, survivor, merged, unless_survivor_has=("template_id",)),
        "subscribe_requests": move_rows(SubscribeRequest, survivor, merged, unless_survivor_has=("request_id",)),
        "callback_tasks": move_rows(CallbackTask, survivor, merged, unless_survivor_has=("reason", "period")),
        "lifecycle_dropped": int(lifecycle_dropped.rowcount or 0),
    }
