"""Who a service-account follower is across the brand's WeChat apps.

WeChat tells the mini-app a user's ``unionid`` at sign-in, but the service account only through
``cgi-bin/user/info``. A follower's unionid is fetched once, by a job after the subscribe or scan
is committed, so the same person's mini-app sign-in joins the member the QR scan created (advisor
attribution and welcome gift kept) instead of making a second one.
"""

from __future__ import annotations

from app.core.db import db
from app.jobs import job
from app.members import identities
from app.members.models import WechatIdentity
from app.wechat.clients import official_client


@job("default", retry=(30, 300, 3600))
def fetch_unionid(identity_id: int) -> str | None:
    """Ask WeChat for the follower's unionid (present when the account is bound to the brand's open
    platform) and join their identities. Safe to run twice."""
    identity = db.session.get(WechatIdentity, identity_id)
    if identity is None or identity.unionid is not None:
        return identity.unionid if identity else None
    unionid = official_client().user.get(identity.openid).get("unionid")
    if unionid:
        identities.link_unionid(identity, unionid)
    return unionid


def learn_unionid_later(identity: WechatIdentity) -> None:
    """After the commit, fetch the unionid of a follower we do not know it for yet."""
    if identity.unionid is None:
        fetch_unionid.after_commit(identity.id, job_id=f"unionid-{identity.id}")
