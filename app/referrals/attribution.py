"""Attribution: a referee who opens a referrer's link or code becomes a lead of that referrer —
the first touch wins (one current referral per referee, a partial unique index), for 180 days;
after that, without a delivery, the next touch takes over — routed to a dealer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.core import audit, events, tunables
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.dealers.models import Dealer, SalesLead
from app.dealers.services import dealer_by_code, nearest_dealers
from app.members.models import Member
from app.referrals import codes, fraud, rewards
from app.referrals.models import Referral

WINDOW_DAYS = tunables.define("referrals.attribution_days", 180, "Days a referral stays attributed to its referrer")


class SelfReferral(Conflict):
    code = "self_referral"
    default_message = _l("You cannot refer yourself or your own household.")


class UnknownCode(NotFound):
    code = "unknown_referral_code"
    default_message = _l("This referral code does not exist.")


@dataclass(frozen=True)
class Attribution:
    referral: Referral
    #: False: the referee was attributed before (first touch wins); this touch changed nothing.
    new: bool


def referral_of_referee(member_id: int, *, lock: bool = False) -> Referral | None:
    """The referee's current referral (not superseded)."""
    query = sa.select(Referral).where(Referral.referee_member_id == member_id, Referral.superseded_at.is_(None))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalar(query)


def _insert_current() -> sa.Insert:
    """INSERT … ON CONFLICT on the partial unique index of current referrals: of racing touches,
    one wins (the unique index decides, not a prior SELECT)."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    return (
        insert(Referral)
        .on_conflict_do_nothing(index_elements=["referee_member_id"], index_where=Referral.superseded_at.is_(None))
        .returning(Referral.id)
    )


def _lapsed(referral: Referral, at: dt.datetime) -> bool:
    """The window passed without a delivery: a new touch may take the referee over."""
    return referral.expires_at < at and referral.delivered_at is None


def dealer_code_of(referral: Referral) -> str:
    dealer = db.session.get(Dealer, referral.dealer_id)
    assert dealer is not None
    return dealer.code


def route(referrer: Member, dealer_code: str | None, latitude: float | None, longitude: float | None) -> Dealer:
    """The dealer the referee chose, else the nearest to where they are, else the referrer's dealer."""
    if dealer_code:
        dealer = dealer_by_code(dealer_code)
        if dealer is None or not dealer.active:
            raise ValidationFailed(fields={"dealer_code": [str(_l("No active dealer has this code."))]})
        return dealer
    if latitude is not None and longitude is not None:
        nearest = nearest_dealers(latitude, longitude, limit=1)
        if nearest:
            return nearest[0][0]
    if referrer.enrolling_dealer_id is not None:
        dealer = db.session.get(Dealer, referrer.enrolling_dealer_id)
        if dealer is not None and dealer.active:
            return dealer
    raise ValidationFailed(fields={"dealer_code": [str(_l("Please choose a dealer."))]})


def attribute(
    code_text: str,
    referee: Member,
    *,
    device_id: str | None = None,
    dealer_code: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    at: dt.datetime | None = None,
) -> Attribution:
    """Attribute ``referee`` to the owner of ``code_text`` (or keep the first attribution)."""
    at = at or utcnow()
    code = codes.by_code(code_text)
    referrer = db.session.get(Member, code.member_id) if code else None
    if referrer is not None and referrer.status == "merged" and referrer.merged_into_id:
        referrer = db.session.get(Member, referrer.merged_into_id)  # a merged member's code is the survivor's
    if code is None or referrer is None or referrer.status not in ("active", "frozen"):
        raise UnknownCode()
    device = codes.device_hash(device_id)
    reason = fraud.self_referral(referrer, referee, device)
    if reason:
        audit.record_regardless(
            actor=("member", referee.id),
            action="referral.self_referral_refused",
            subject=("member", referrer.id),
            details={"reason": reason},
        )
        raise SelfReferral(details={"reason": reason})
    codes.record_device(referee.id, device)
    existing = referral_of_referee(referee.id)
    if existing is not None and not _lapsed(existing, at):
        return Attribution(existing, False)
    dealer = route(referrer, dealer_code, latitude, longitude)
    if existing is not None:
        lapsed = referral_of_referee(referee.id, lock=True)  # racing touches supersede it once
        if lapsed is not None and not _lapsed(lapsed, at):
            return Attribution(lapsed, False)
        if lapsed is not None:
            lapsed.superseded_at = at
            if lapsed.reward_status in ("none", "held"):
                lapsed.reward_status = "expired"
            db.session.flush()
    flags = fraud.flags_for(referrer.id, referee.id, code.code, device, at)
    new_id = db.session.execute(
        _insert_current(),
        {
            "referrer_member_id": referrer.id,
            "referee_member_id": referee.id,
            "code": code.code,
            "dealer_id": dealer.id,
            "device_hash": device,
            "milestone": "lead",
            "reward_status": "held" if flags else "none",
            "review": "pending" if flags else "none",
            "flags": flags,
            "attributed_at": at,
            "expires_at": at + dt.timedelta(days=WINDOW_DAYS.value()),
            "reward_points": 0,
            "clawed_back_points": 0,
            "created_at": at,
            "updated_at": at,
        },
    ).scalar_one_or_none()
    referral = referral_of_referee(referee.id)
    assert referral is not None
    if new_id is None:
        return Attribution(referral, False)  # another referrer's touch committed first
    lead = SalesLead(
        dealer_id=dealer.id,
        member_id=referee.id,
        phone_index=referee.phone_index,
        source="referral",
        source_ref=rewards.ref_of(referral),
        referrer_member_id=referrer.id,
        status="new",
        created_at=at,
        updated_at=at,
    )
    db.session.add(lead)
    db.session.flush()
    referral.lead_id = lead.id
    events.publish(events.ReferralMilestoneReached(referral.id, referrer.id, referee.id, "lead", at))
    rewards.reward_small(referral, "lead", at)
    return Attribution(referral, True)
