"""Mini-app subscribe-message grants: what a member accepted in ``wx.requestSubscribeMessage``.

Each accepted template is one future send (WeChat's one-time subscription); ``use_grant`` takes
one when a message goes out, so a grant is never used twice.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.care.models import SubscribeGrant, SubscribeRequest
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent

DECISIONS = ("accept", "reject", "ban", "filter")


def record(member_id: int, request_id: str, results: dict[str, str]) -> list[SubscribeGrant]:
    """Apply the result object of wx.requestSubscribeMessage: each 'accept' adds one send. The same
    ``request_id`` again (a retry after a timeout, a double tap) changes nothing."""
    first_time = insert_if_absent(
        SubscribeRequest,
        {"member_id": member_id, "request_id": request_id, "created_at": utcnow()},
        conflict_columns=("member_id", "request_id"),
    )
    if first_time is None:
        return for_member(member_id)
    grants = []
    for template_id, decision in sorted(results.items()):
        insert_if_absent(
            SubscribeGrant,
            {
                "member_id": member_id,
                "template_id": template_id,
                "available": 0,
                "accepted_total": 0,
                "used_total": 0,
                "last_decision": decision,
                "updated_at": utcnow(),
            },
            conflict_columns=("member_id", "template_id"),
        )
        grant = db.session.scalars(
            sa.select(SubscribeGrant)
            .where(SubscribeGrant.member_id == member_id, SubscribeGrant.template_id == template_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        grant.last_decision = decision
        grant.updated_at = utcnow()
        if decision == "accept":
            grant.available += 1
            grant.accepted_total += 1
        elif decision == "ban":
            grant.available = 0  # the member switched this message off in WeChat
        grants.append(grant)
    db.session.flush()
    return grants


def use_grant(member_id: int, template_id: str) -> bool:
    """Take one send; False when the member has none left for this template."""
    used = db.session.execute(
        sa.update(SubscribeGrant)
        .where(
            SubscribeGrant.member_id == member_id,
            SubscribeGrant.template_id == template_id,
            SubscribeGrant.available > 0,
        )
        .values(available=SubscribeGrant.available - 1, used_total=SubscribeGrant.used_total + 1, updated_at=utcnow())
    )
    return used.rowcount == 1


def give_back(member_id: int, template_id: str) -> None:
    """A grant taken for a send that did not go out on the mini-app: unused after all."""
    db.session.execute(
        sa.update(SubscribeGrant)
        .where(SubscribeGrant.member_id == member_id, SubscribeGrant.template_id == template_id)
        .values(available=SubscribeGrant.available + 1, used_total=SubscribeGrant.used_total - 1, updated_at=utcnow())
    )


def forget_grants(member_id: int, template_id: str) -> None:
    """WeChat says the member has no grant left for this template: believe it."""
    db.session.execute(
        sa.update(SubscribeGrant)
        .where(SubscribeGrant.member_id == member_id, SubscribeGrant.template_id == template_id)
        .values(available=0, updated_at=utcnow())
    )


def for_member(member_id: int) -> list[SubscribeGrant]:
    return list(
        db.session.scalars(
            sa.select(SubscribeGrant).where(SubscribeGrant.member_id == member_id).order_by(SubscribeGrant.template_id)
        )
    )
