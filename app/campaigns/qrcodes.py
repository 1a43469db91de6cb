"""Parametric QR codes of the service account: order enrollment, advisors, campaigns.

WeChat allows at most 100,000 *permanent* codes per account, so only campaign codes that go on
print can be permanent (and a guard counts them). Order and advisor codes are temporary (≤ 30
days): an advisor's code is reused while it has more than two days left and replaced
automatically after that; a periodic job renews codes that are about to expire.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app import gateways
from app.campaigns.models import Campaign, QrCode
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.core.i18n import _l
from app.core.qr import qr_png
from app.dealers.models import Staff
from app.jobs import job
from app.members import services
from app.members.models import EnrollmentToken

MAX_TEMPORARY_SECONDS = 30 * 24 * 3600
PERMANENT_CAP = tunables.define("wechat.permanent_qr_cap", 100_000, "Permanent QR codes WeChat allows per account")
RENEW_BEFORE = dt.timedelta(days=2)


def _create(
    kind: str, scene: str, *, seconds: int | None, stored_scene: str | None = None, **links: int | None
) -> QrCode:
    """Ask WeChat for a string-scene code: temporary for ``seconds``, or permanent when None.
    With ``stored_scene`` the scene carries a secret: the row keeps that placeholder and neither
    ticket nor URL (they would work like the secret)."""
    ticket = gateways.official_account().create_qr_code(scene, expire_seconds=seconds)
    now = utcnow()
    code = QrCode(
        kind=kind,
        scene=stored_scene or scene,
        permanent=seconds is None,
        ticket="" if stored_scene else ticket.ticket,
        url="" if stored_scene else ticket.url,
        expires_at=None if seconds is None else now + dt.timedelta(seconds=ticket.expire_seconds or seconds),
        created_at=now,
        **links,
    )
    db.session.add(code)
    db.session.flush()
    if stored_scene:  # what the caller shows now, detached so it is never written back
        db.session.expunge(code)
        code.scene, code.ticket, code.url = scene, ticket.ticket, ticket.url
    return code


def _current(scene: str, fresh_until: dt.datetime) -> QrCode | None:
    return db.session.scalar(
        sa.select(QrCode)
        .where(QrCode.scene == scene, sa.or_(QrCode.permanent, QrCode.expires_at > fresh_until))
        .order_by(QrCode.created_at.desc())
        .limit(1)
    )


def for_order_token(token: EnrollmentToken) -> QrCode:
    """The buyer's enrollment code, valid as long as the token (at most 30 days).

    The token is a bearer secret stored only as a hash, so each call issues a fresh secret (the
    codes shown before stop working) and a new WeChat code. The returned code carries the scene
    and URL for showing now; the stored row keeps neither (they would work like the token).
    """
    now = utcnow()
    seconds = min(MAX_TEMPORARY_SECONDS, int((token.expires_at - now).total_seconds()))
    if seconds <= 0 or token.used_at is not None:
        raise Conflict(_l("This enrollment code has expired or was used."))
    scene = f"order:{services.issue_order_secret(token)}"
    return _create("order", scene, seconds=seconds, stored_scene=f"order:#{token.id}", enrollment_token_id=token.id)


def for_advisor(staff: Staff) -> QrCode:
    """The advisor's personal code; renewed automatically when fewer than two days are left."""
    scene = f"adv:{staff.staff_code}"
    existing = _current(scene, utcnow() + RENEW_BEFORE)
    return existing or _create("advisor", scene, seconds=MAX_TEMPORARY_SECONDS, staff_id=staff.id)


def for_campaign(campaign: Campaign, *, permanent: bool = False) -> QrCode:
    scene = f"camp:{campaign.code}"
    existing = _current(scene, utcnow() + RENEW_BEFORE)
    if existing is not None and (existing.permanent or not permanent):
        return existing
    if permanent:
        # Permanent codes are never given back by WeChat: allocate them one at a time, re-checking
        # under the lock whether a concurrent request has just made this campaign's.
        if db.dialect == "postgresql":
            db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("wechat:permanent-qr"))))
        made = db.session.scalar(sa.select(QrCode).where(QrCode.scene == scene, QrCode.permanent).limit(1))
        if made is not None:
            return made
        used = db.session.scalar(sa.select(sa.func.count()).where(QrCode.permanent))
        if used >= PERMANENT_CAP.value():
            raise Conflict(_l("The account has no permanent QR codes left; use a temporary one."))
        return _create("campaign", scene, seconds=None, campaign_id=campaign.id)
    seconds = min(MAX_TEMPORARY_SECONDS, max(60, int((campaign.ends_at - utcnow()).total_seconds())))
    return _create("campaign", scene, seconds=seconds, campaign_id=campaign.id)


def png(code: QrCode, box_size: int = 8) -> bytes:
    """The QR image: WeChat's ``url`` is what the code must contain."""
    return qr_png(code.url, box_size)


@job("periodic", timeout=1800)
def renew_advisor_codes() -> int:
    """Daily: give advisors whose code is about to expire a fresh one before they need it."""
    renewed = 0
    for staff in db.session.scalars(sa.select(Staff).where(Staff.active, Staff.role == "sales_advisor")):
        scene = f"adv:{staff.staff_code}"
        if _current(scene, utcnow() + RENEW_BEFORE) is None and _current(scene, utcnow()) is not None:
            _create("advisor", scene, seconds=MAX_TEMPORARY_SECONDS, staff_id=staff.id)
            renewed += 1
    return renewed
