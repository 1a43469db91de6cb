"""WeChat identities: follow state, binding an openid to a member. Unfollowing never deletes anyone."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app import gateways
from app.core import events
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.jobs import job
from app.members.events import IdentityLinked
from app.members.models import Member, WechatIdentity


def get_or_create(app_id: str, openid: str, *, app_kind: str = "official") -> WechatIdentity:
    """The identity for (app, openid), created on first contact; safe when two requests race."""
    insert_if_absent(
        WechatIdentity,
        {"app_kind": app_kind, "app_id": app_id, "openid": openid, "following": False, "created_at": utcnow()},
        conflict_columns=("app_id", "openid"),
    )
    # populate_existing: a copy loaded earlier in this session (before the lock) would otherwise be
    # returned as it was, e.g. still without the member a concurrent drain just bound to it.
    return db.session.scalars(
        sa.select(WechatIdentity)
        .where(WechatIdentity.app_id == app_id, WechatIdentity.openid == openid)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def find(app_id: str, openid: str) -> WechatIdentity | None:
    return db.session.scalar(
        sa.select(WechatIdentity).where(WechatIdentity.app_id == app_id, WechatIdentity.openid == openid)
    )


def member_of(identity: WechatIdentity | None) -> Member | None:
    """The member this WeChat identity belongs to, if any."""
    return db.session.get(Member, identity.member_id) if identity is not None and identity.member_id else None


def follow(identity: WechatIdentity, at: dt.datetime) -> None:
    identity.following = True
    identity.followed_at = at


def unfollow(identity: WechatIdentity, at: dt.datetime) -> None:
    identity.following = False
    identity.unfollowed_at = at


def bind(identity: WechatIdentity, member: Member) -> bool:
    """Attach the openid to the member. False if it already belongs to someone else."""
    if identity.member_id is not None and identity.member_id != member.id:
        return False
    if identity.member_id != member.id:
        identity.member_id = member.id
        db.session.flush()
        events.publish(IdentityLinked(member.id, identity.id))
    return True


def link_unionid(identity: WechatIdentity, unionid: str) -> None:
    """Record the unionid WeChat gave for this openid and join one person's identities (service
    account and mini-app): an identity without a member joins its twin's member, and twins without
    a member join this identity's. Two different members stay apart (a merge is for customer service)."""
    identity.unionid = unionid
    twins = list(
        db.session.scalars(
            sa.select(WechatIdentity).where(WechatIdentity.unionid == unionid, WechatIdentity.id != identity.id)
        )
    )
    if identity.member_id is None:
        members = {twin.member_id for twin in twins if twin.member_id is not None}
        if len(members) == 1:
            identity.member_id = members.pop()
    if identity.member_id is not None:
        for twin in twins:
            if twin.member_id is None:
                twin.member_id = identity.member_id
    db.session.flush()
    if identity.member_id is not None:
        events.publish(IdentityLinked(identity.member_id, identity.id))


def official_openid(member_id: int, app_id: str) -> str | None:
    """The member's service-account openid, if they follow it (template messages need that)."""
    return db.session.scalar(
        sa.select(WechatIdentity.openid).where(
            WechatIdentity.member_id == member_id,
            WechatIdentity.app_id == app_id,
            WechatIdentity.following.is_(True),
        )
    )


#: A member's chat messages are stamped on their identity at most this often (the lifecycle needs days).
MESSAGE_STAMP_EVERY = dt.timedelta(hours=1)


def record_message(identity: WechatIdentity, at: dt.datetime) -> bool:
    """A member wrote to the account: an interaction for the lifecycle stage. One conditional UPDATE,
    written at most once an hour per identity; returns whether it wrote."""
    if identity.member_id is None:
        return False
    stamped = db.session.execute(
        sa.update(WechatIdentity)
        .where(
            WechatIdentity.id == identity.id,
            sa.or_(WechatIdentity.last_message_at.is_(None), WechatIdentity.last_message_at < at - MESSAGE_STAMP_EVERY),
        )
        .values(last_message_at=at)
        .execution_options(synchronize_session="fetch")
    )
    return bool(stamped.rowcount)


def record_location(identity: WechatIdentity, latitude: float, longitude: float, at: dt.datetime) -> None:
    identity.latitude, identity.longitude, identity.located_at = latitude, longitude, at


@job("default", retry=(30, 300, 3600))
def fetch_unionid(identity_id: int) -> str | None:
    """Ask WeChat for a service-account follower's unionid (present when the account is bound to the
    brand's open platform) and join their identities. Safe to run twice.

    WeChat tells the mini-app a user's unionid at sign-in, but the service account only through
    ``user/info``; fetching it once after a subscribe or scan lets the same person's mini-app sign-in
    join the member their QR scan created (attribution and welcome gift kept)."""
    identity = db.session.get(WechatIdentity, identity_id)
    if identity is None or identity.unionid is not None:
        return identity.unionid if identity else None
    unionid = gateways.official_account().follower_unionid(identity.openid)
    if unionid:
        link_unionid(identity, unionid)
    return unionid


def learn_unionid_later(identity: WechatIdentity) -> None:
    """After the commit, fetch the unionid of a follower we do not know it for yet."""
    if identity.unionid is None:
        fetch_unionid.after_commit(identity.id, job_id=f"unionid-{identity.id}")
