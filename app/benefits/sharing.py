"""Giving a transferable benefit to a friend (SPEC §5 "Transfer").

The giver shares one use of their quota: a ``benefit_shares`` row with an opaque key (the share link
and the mini-app code scene carry it) and a ``transfer`` entitlement row that holds the use. A
signed-in friend who accepted the policy (a new person registers first and so becomes a member)
claims it: one conditional UPDATE (``status = 'open'``) decides, so a share is claimed at most once
however many friends tap at the same moment. The claim hands the dealer a sales lead (who, the
model, source ``benefit_transfer``, the giver as referrer). The friend then books it like any
benefit, paid with the share. A share unclaimed after 7 days returns to the giver (hourly job).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from app.benefits import availability, catalog, entitlements
from app.benefits.booking import BenefitUnavailable
from app.benefits.entitlements import Holder
from app.benefits.models import BenefitShare
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.dealers import leads
from app.dealers.services import dealer_by_code
from app.gateways.wxacode import cached_unlimited_code
from app.jobs import job
from app.members.models import Member
from app.tiers.policy import current_tier

SHARE_DAYS = tunables.define("benefits.share_days", 7, "Days a benefit share can be claimed before it returns")


class NotTransferable(Conflict):
    code = "not_transferable"
    default_message = _l("This benefit cannot be given to someone else.")


class NothingToShare(Conflict):
    code = "nothing_to_share"
    default_message = _l("You have none of this benefit left to give this membership year.")


class ShareTaken(Conflict):
    code = "share_taken"
    default_message = _l("Someone else has already claimed this benefit.")


class ShareExpired(Conflict):
    code = "share_expired"
    default_message = _l("This share has expired.")


class OwnShare(Conflict):
    code = "own_share"
    default_message = _l("You cannot claim a benefit you shared yourself.")


@dataclass(frozen=True)
class Shared:
    share: BenefitShare
    new: bool


def _share_dealer(member: Member, dealer_code: str | None) -> int:
    """The dealer that gets the lead: the one chosen, else the giver's car's seller, else their enrolling dealer."""
    if dealer_code is not None:
        dealer = dealer_by_code(dealer_code)
        if dealer is None or not dealer.active:
            raise ValidationFailed(fields={"dealer": [_l("Unknown dealer code.")]})
        return dealer.id
    for vehicle in member.current_vehicles:
        if vehicle.selling_dealer_id is not None:
            return vehicle.selling_dealer_id
    if member.enrolling_dealer_id is not None:
        return member.enrolling_dealer_id
    raise ValidationFailed(fields={"dealer": [_l("Choose the dealer where your friend will use this benefit.")]})


def _by_request(member_id: int, request_id: str) -> BenefitShare | None:
    return db.session.scalar(
        sa.select(BenefitShare).where(BenefitShare.from_member_id == member_id, BenefitShare.request_id == request_id)
    )


def share(
    member: Member, *, benefit_code: str, request_id: str, dealer_code: str | None = None, model: str | None = None
) -> Shared:
    """Hold one use of a transferable, member-bound benefit for a friend; a resend returns the same share."""
    existing = _by_request(member.id, request_id)
    if existing is not None:
        return Shared(existing, False)
    benefit = catalog.benefit_in_force(benefit_code)
    if benefit is None:
        raise ValidationFailed(fields={"benefit": [_l("Unknown benefit.")]})
    if not benefit.transferable or benefit.binding != "member":
        raise NotTransferable()
    tier = current_tier(member.id)
    offer = availability.offer(member, benefit, tier)
    if offer.reason not in (None, "quota_used_up"):
        raise BenefitUnavailable(offer.reason_message, details={"reason": offer.reason})
    if offer.pays_with not in ("quota", None):
        raise NothingToShare()  # points or unlimited: there is no use of a quota to hand over
    now = utcnow()
    holder = Holder(member.id, None)
    year_start, _end = entitlements.membership_year(holder)
    share_id = insert_if_absent(
        BenefitShare,
        {
            "key": secrets.token_urlsafe(18),  # 24 characters, 144 bits: unguessable
            "from_member_id": member.id,
            "request_id": request_id,
            "benefit_id": benefit.id,
            "benefit_code": benefit.code,
            "year_start": year_start,
            "dealer_id": _share_dealer(member, dealer_code),
            "model_interest": model,
            "status": "open",
            "expires_at": now + dt.timedelta(days=SHARE_DAYS.value()),
            "created_at": now,
        },
        ("from_member_id", "request_id"),
    )
    if share_id is None:  # a concurrent resend committed first
        twin = _by_request(member.id, request_id)
        assert twin is not None
        return Shared(twin, False)
    if entitlements.hold_for_share(holder, benefit, tier, share_id=share_id) is None:
        raise NothingToShare()  # the edge rolls the share row back
    row = db.session.get(BenefitShare, share_id)
    assert row is not None
    return Shared(row, True)


KEY_RE = re.compile(r"[A-Za-z0-9_-]{8,32}")
#: The mini-app page a share link and code open; the code's scene carries the key (26 ≤ 32 characters).
CLAIM_PAGE = "pages/share/claim"
SCENE_PREFIX = "s="


def scene_of(row: BenefitShare) -> str:
    return f"{SCENE_PREFIX}{row.key}"


def link_path(row: BenefitShare) -> str:
    return f"{CLAIM_PAGE}?key={row.key}"


def wxacode(member: Member, key: str) -> bytes:
    """The mini-app code of a share the member gave (asked of WeChat once, then kept on the share).
    Only the giver gets it: anyone else, 404."""
    row = by_key(key)
    if row.from_member_id != member.id:
        raise NotFound(_l("No such share."))
    return cached_unlimited_code(row, scene=scene_of(row), page=CLAIM_PAGE)


def by_key(key: str) -> BenefitShare:
    row = db.session.scalar(sa.select(BenefitShare).where(BenefitShare.key == key)) if KEY_RE.fullmatch(key) else None
    if row is None:
        raise NotFound(_l("No such share."))
    return row


def claim(friend: Member, key: str, *, model: str | None = None) -> BenefitShare:
    """Take the share for ``friend``: exactly once (a conditional UPDATE), then the dealer's lead.
    The friend's own resend answers the same; anyone else is told it is taken."""
    if not KEY_RE.fullmatch(key):
        raise NotFound(_l("No such share."))
    now = utcnow()
    claimed_id = db.session.execute(
        sa.update(BenefitShare)
        .where(
            BenefitShare.key == key,
            BenefitShare.status == "open",
            BenefitShare.expires_at > now,
            BenefitShare.from_member_id != friend.id,
        )
        .values(status="claimed", claimed_by_member_id=friend.id, claimed_at=now)
        .returning(BenefitShare.id)
    ).scalar_one_or_none()
    row = db.session.scalar(
        sa.select(BenefitShare).where(BenefitShare.key == key).execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound(_l("No such share."))
    if claimed_id is None:
        if row.claimed_by_member_id == friend.id:
            return row
        if row.from_member_id == friend.id:
            raise OwnShare()
        if row.status == "claimed":
            raise ShareTaken()
        raise ShareExpired()
    leads.record_lead(
        dealer_id=row.dealer_id,
        member_id=friend.id,
        model_interest=model or row.model_interest,
        source="benefit_transfer",
        source_ref=f"share:{row.id}",
        referrer_member_id=row.from_member_id,
        at=now,
    )
    return row


def shares_of(member_id: int, limit: int = 50) -> list[BenefitShare]:
    """Shares the member gave or claimed, newest first."""
    return list(
        db.session.scalars(
            sa.select(BenefitShare)
            .where(sa.or_(BenefitShare.from_member_id == member_id, BenefitShare.claimed_by_member_id == member_id))
            .order_by(BenefitShare.created_at.desc(), BenefitShare.id.desc())
            .limit(limit)
        )
    )


def return_expired(now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Open shares past their 7 days go back to the giver (status ``returned`` and a restore row)."""
    now = now or utcnow()
    rows = db.session.scalars(
        sa.select(BenefitShare)
        .where(BenefitShare.status == "open", BenefitShare.expires_at <= now)
        .order_by(BenefitShare.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.status, row.returned_at = "returned", now
        holder = Holder(row.from_member_id, None)
        entitlements.return_share(holder, row.benefit_code, row.year_start, share_id=row.id)
    db.session.flush()
    return len(rows)


@job("periodic")
def return_unclaimed_shares() -> int:
    """Hourly: unclaimed shares older than 7 days return to their givers."""
    return return_expired()
