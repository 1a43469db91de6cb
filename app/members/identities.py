"""WeChat identities: follow state, binding an openid to a member. Unfollowing never deletes anyone."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app import gateways
from app.core import events
from app.core.clock import utcnow
from app.core.db import adopt_inserted, db, insert_if_absent
from app.jobs import job
from app.members.events import IdentityLinked
from app.members.models import Member, WechatIdentity


def get_or_create(
    app_id: str, openid: str, *, app_kind: str = "official", following_since: dt.datetime | None = None
) -> WechatIdentity:
    """The identity for (app, openid), locked for this transaction, created on first contact (as
    following since ``following_since`` when given: a subscribe); safe when two requests race.

    One statement for a newcomer (the INSERT; a row this transaction inserted is locked for it
    already), two for a known identity (the INSERT that conflicts, the SELECT … FOR UPDATE), none
    when this transaction has it locked already (the drain's handler asks twice per event)."""
    identity = _locked_in_transaction().get((app_id, openid))
    if identity is not None:
        return identity
    values = {
        "app_kind": app_kind,
        "app_id": app_id,
        "openid": openid,
        "following": following_since is not None,
        "followed_at": following_since,
        "created_at": utcnow(),
    }
    new_id = insert_if_absent(WechatIdentity, values, conflict_columns=("app_id", "openid"))
    if new_id is not None:
        identity = adopt_inserted(WechatIdentity, new_id, values)
    else:
        # populate_existing: a copy loaded earlier in this session (before the lock) would otherwise
        # be returned as it was, e.g. still without the member a concurrent drain just bound to it.
        identity = db.session.scalars(
            sa.select(WechatIdentity)
            .where(WechatIdentity.app_id == app_id, WechatIdentity.openid == openid)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
    _locked_in_transaction()[(app_id, openid)] = identity
    return identity


_LOCKED_KEY = "wechat_identities_locked"


def _locked_in_transaction() -> dict[tuple[str, str], WechatIdentity]:
    """The identities this session's current transaction has locked (by ``get_or_create``)."""
    session = db.session()
    transaction = session.get_transaction()
    if transaction is None:
        return {}  # nothing locked before the first statement
    kept = session.info.get(_LOCKED_KEY)
    if kept is None or kept[0] is not transaction:
        kept = (transaction, {})
        session.info[_LOCKED_KEY] = kept
    return kept[1]


@sa.event.listens_for(Session, "after_soft_rollback")
def _forget_locked_on_rollback(session: Session, _previous: object) -> None:
    """A rollback (of a savepoint too) may have undone an INSERT or released a lock: ask again."""
    session.info.pop(_LOCKED_KEY, None)


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
