"""Each member's referral code, its share link and mini-app code (cached), and the devices seen."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.security import cipher
from app.gateways.wxacode import cached_unlimited_code
from app.referrals.models import MemberDevice, ReferralCode

H5_BASE = tunables.define("wechat.h5_base_url", "https://m.loyalty.example.com", "Web fallback for mini-app links")
REFERRAL_PAGE = "pages/referral/index"
#: Crockford-like alphabet without look-alikes (0/O, 1/I/L): codes are read aloud and typed.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
SCENE_PREFIX = "r="


def _new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))


def code_of(member_id: int) -> ReferralCode:
    """The member's code, created on first use (the unique member_id makes concurrent first uses one)."""
    row = db.session.scalar(sa.select(ReferralCode).where(ReferralCode.member_id == member_id))
    while row is None:
        insert_if_absent(
            ReferralCode,
            {"member_id": member_id, "code": _new_code(), "created_at": utcnow()},
            conflict_columns=("member_id",),
        )
        row = db.session.scalar(sa.select(ReferralCode).where(ReferralCode.member_id == member_id))
    return row


def by_code(code: str) -> ReferralCode | None:
    return db.session.scalar(sa.select(ReferralCode).where(ReferralCode.code == code.strip().upper()))


def scene_of(code: ReferralCode) -> str:
    """The mini-app code's scene: an opaque key (10 characters), far below WeChat's 32."""
    return f"{SCENE_PREFIX}{code.code}"


def code_from_scene(scene: str) -> str | None:
    return scene[len(SCENE_PREFIX) :] if scene.startswith(SCENE_PREFIX) else None


def share_link(code: ReferralCode) -> str:
    return f"{H5_BASE.value()}/{REFERRAL_PAGE}?code={code.code}"


def wxacode(code: ReferralCode) -> bytes:
    """The mini-app code image; asked of WeChat once, then served from the row."""
    return cached_unlimited_code(code, scene=scene_of(code), page=REFERRAL_PAGE)


def device_hash(device_id: str | None) -> str | None:
    """A keyed hash of the mini-app's device id (the id itself is never stored)."""
    device_id = (device_id or "").strip()
    return cipher().blind_index(device_id, "device") if device_id else None


def record_device(member_id: int, hashed: str | None) -> None:
    if hashed:
        insert_if_absent(
            MemberDevice,
            {"member_id": member_id, "device_hash": hashed, "first_seen_at": utcnow()},
            conflict_columns=("member_id", "device_hash"),
        )


def members_on_device(hashed: str) -> set[int]:
    return set(db.session.scalars(sa.select(MemberDevice.member_id).where(MemberDevice.device_hash == hashed)))
