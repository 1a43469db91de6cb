"""WeChat identities: follow state, binding an openid to a member. Unfollowing never deletes anyone."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
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
    identity.member_id = member.id
    db.session.flush()
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


def official_openid(member_id: int, app_id: str) -> str | None:
    """The member's service-account openid, if they follow it (template messages need that)."""
    return db.session.scalar(
        sa.select(WechatIdentity.openid).where(
            WechatIdentity.member_id == member_id,
            WechatIdentity.app_id == app_id,
            WechatIdentity.following.is_(True),
        )
    )


def record_location(identity: WechatIdentity, latitude: float, longitude: float, at: dt.datetime) -> None:
    identity.latitude, identity.longitude, identity.located_at = latitude, longitude, at
