"""Freezing a membership (SPEC §12 "freeze a member"): a hold while customer service investigates
(suspected fraud, a dispute, a reported stolen phone).

What a frozen member can and cannot do:

* **spend**: no. Deductions at the dealer refuse anyone not ``active`` (``points/deductions.py``);
  every later redemption must check ``status == "active"`` the same way.
* **earn**: yes, but held. Reward points from business events land in ``held`` lots
  (``points/earning.award_event``), visible and not spendable; tier points count, because the
  purchase or visit did happen. Unfreezing releases the held lots (a refund lock still runs).
* **sign in** to the mini-app and see the balance: yes (``api/auth.member_required``).
* **manual adjustments**: allowed (a clawback is typically made while frozen), still two-person
  above the threshold.

Only an ``active`` member can be frozen, and only a frozen one unfrozen; the member row is locked,
so two agents acting at once change the status once (the second is told it already happened).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from app.core import audit
from app.core.db import db
from app.core.errors import Conflict, Forbidden, ValidationFailed
from app.core.i18n import _l
from app.members.models import Member
from app.points import ledger

#: HQ customer service decides on holds; dealers and program operators do not.
FREEZERS = ("agent", "supervisor")
REASON_LIMIT = 255


@dataclass(frozen=True)
class StatusChange:
    member: Member
    released_points: int = 0


def _locked(member_id: int) -> Member:
    return db.session.scalars(
        sa.select(Member).where(Member.id == member_id).with_for_update().execution_options(populate_existing=True)
    ).one()


def _check(role: str, reason: str) -> str:
    if role not in FREEZERS:
        raise Forbidden(_l("Only customer-service agents and supervisors can freeze or unfreeze a member."))
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(fields={"reason": [_l("Give the reason.")]})
    if len(reason) > REASON_LIMIT:
        raise ValidationFailed(fields={"reason": [_l("At most 255 characters.")]})
    return reason


def freeze(member_id: int, *, actor: str, role: str, reason: str) -> StatusChange:
    """Freeze an active member (409 when not active, e.g. frozen a moment ago by someone else)."""
    reason = _check(role, reason)
    ledger.lock_account(member_id)  # lock order: the point account first, as every ledger writer
    member = _locked(member_id)
    if member.status != "active":
        raise Conflict(_l("Only an active member can be frozen."), details={"status": member.status})
    member.status = "frozen"
    audit.record(actor=("staff", actor), action="member.frozen", subject=("member", member.id), reason=reason)
    return StatusChange(member)


def unfreeze(member_id: int, *, actor: str, role: str, reason: str) -> StatusChange:
    """Unfreeze: the member is active again and the reward points held meanwhile are released."""
    reason = _check(role, reason)
    ledger.lock_account(member_id)
    member = _locked(member_id)
    if member.status != "frozen":
        raise Conflict(_l("This member is not frozen."), details={"status": member.status})
    member.status = "active"
    released = ledger.release_lots(member.id, ("held",))
    audit.record(
        actor=("staff", actor),
        action="member.unfrozen",
        subject=("member", member.id),
        reason=reason,
        details={"released_points": released},
    )
    return StatusChange(member, released)
