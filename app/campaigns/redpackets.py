"""Red-packet sign-up (扫码领红包 / 口令红包): who gets a packet, never past the budget.

Granting locks the campaign row, so the budget, the daily cap and "once per member" are checked
and committed atomically whatever the concurrency; ``UNIQUE (campaign_id, member_id)`` backs the
last one up. A grant then waits for the payout job (``app.campaigns.payouts``), which sends it through
WeChat Pay under a bill number derived from the grant: retries reuse it and cannot pay twice.
A packet WeChat reports FAILED gives its money back to the budget; refunds of unclaimed packets
are recorded as such.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.campaigns.models import Campaign, RedPacketGrant
from app.core import audit
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.members.models import Member

#: WeChat Pay's red-packet states (gethbinfo) and what they mean for a grant.
WECHAT_STATUS_TO_GRANT = {
    "SENDING": "sending",
    "SENT": "sent",
    "FAILED": "failed",
    "RECEIVED": "received",
    "RFUND_ING": "refunding",
    "REFUND": "refunded",
}


#: Grant states in which the money has left through WeChat Pay (a refund comes back later).
PAID = ("sent", "received", "refunding", "refunded")
#: Grant states holding budget that has not been paid out yet.
RESERVED = ("reserved", "sending")


@dataclass(frozen=True)
class SignUp:
    outcome: str  # granted, already_granted, not_running, budget_exhausted, daily_cap_reached, channel_closed
    grant: RedPacketGrant | None = None


def create_campaign(
    code: str,
    *,
    name: str,
    budget_fen: int,
    amount_fen: int,
    daily_cap: int | None,
    days: int,
    password: str | None,
    channels: list[str],
) -> Campaign:
    """A running campaign from now for ``days`` (SPEC §2: a packet is ¥1–200)."""
    if not 100 <= amount_fen <= 20_000:
        raise ValueError("a red packet is between ¥1 and ¥200")
    now = utcnow()
    campaign = Campaign(
        code=code,
        name=name,
        status="active",
        budget_fen=budget_fen,
        amount_fen=amount_fen,
        daily_cap=daily_cap,
        starts_at=now,
        ends_at=now + dt.timedelta(days=days),
        channels=channels,
        password=password,
        send_name="一汽大众会员",
        wishing="感谢您的关注，祝您用车愉快！",
        act_name=name[:32],
        remark="扫码入会领红包",
    )
    db.session.add(campaign)
    db.session.flush()
    return campaign


def all_campaigns() -> list[Campaign]:
    return list(db.session.scalars(sa.select(Campaign).order_by(Campaign.id)))


def campaign_by_code(code: str) -> Campaign | None:
    return db.session.scalar(sa.select(Campaign).where(Campaign.code == code))


def campaign_by_password(text: str, at: dt.datetime | None = None) -> Campaign | None:
    """The running campaign whose password (口令) is exactly this text (case- and space-insensitive).
    A draft or ended campaign's password is ordinary chat: it neither enrolls nor pays anyone."""
    word = text.strip().lower()
    if not word or len(word) > 32:
        return None
    at = at or utcnow()
    return db.session.scalar(
        sa.select(Campaign)
        .where(
            sa.func.lower(Campaign.password) == word,
            Campaign.status == "active",
            Campaign.starts_at <= at,
            Campaign.ends_at > at,
        )
        .order_by(Campaign.id)
        .limit(1)
    )


def is_running(campaign: Campaign, at: dt.datetime) -> bool:
    return campaign.status == "active" and campaign.starts_at <= at < campaign.ends_at


def bill_number(mch_id: str, grant: RedPacketGrant) -> str:
    """WeChat's format: merchant id + yyyymmdd + 10 digits unique that day; 28 characters here."""
    return f"{mch_id[:10]}{grant.business_date:%Y%m%d}{grant.id % 10**10:010d}"


def sign_up(campaign_id: int, member: Member, openid: str, *, via: str, mch_id: str) -> SignUp:
    """Reserve one packet for ``member`` if the campaign allows it now."""
    campaign = db.session.scalars(
        sa.select(Campaign)
        .where(Campaign.id == campaign_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    now = utcnow()
    if not is_running(campaign, now):
        return SignUp("not_running")
    if via not in (campaign.channels or []):
        return SignUp("channel_closed")
    existing = db.session.scalar(
        sa.select(RedPacketGrant).where(
            RedPacketGrant.campaign_id == campaign.id, RedPacketGrant.member_id == member.id
        )
    )
    if existing is not None:
        return SignUp("already_granted", existing)
    today = business_today()
    if campaign.daily_cap is not None:
        granted_today = db.session.scalar(
            sa.select(sa.func.count()).where(
                RedPacketGrant.campaign_id == campaign.id,
                RedPacketGrant.business_date == today,
                RedPacketGrant.status != "failed",
            )
        )
        if granted_today >= campaign.daily_cap:
            return SignUp("daily_cap_reached")
    if campaign.committed_fen + campaign.amount_fen > campaign.budget_fen:
        return SignUp("budget_exhausted")
    grant = RedPacketGrant(
        campaign_id=campaign.id,
        member_id=member.id,
        openid=openid,
        amount_fen=campaign.amount_fen,
        business_date=today,
        status="reserved",
        created_at=now,
    )
    db.session.add(grant)
    db.session.flush()
    grant.bill_no = bill_number(mch_id, grant)
    campaign.committed_fen += campaign.amount_fen
    db.session.flush()
    audit.record(
        actor=("member", member.id),
        action="red_packet.granted",
        subject=("campaign", campaign.id),
        details={"grant": grant.id, "amount_fen": grant.amount_fen, "via": via},
    )
    return SignUp("granted", grant)


def lock_grant(grant_id: int) -> RedPacketGrant | None:
    return db.session.scalars(
        sa.select(RedPacketGrant)
        .where(RedPacketGrant.id == grant_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def _move_campaign_money(campaign_id: int, **deltas: int) -> None:
    """Add to a campaign's money columns in the database (``x = x + delta``), never from a copy
    loaded earlier: sign-ups committed meanwhile (during a WeChat call) must not be overwritten."""
    table = Campaign.__table__
    db.session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id)
        .values({table.c[column]: table.c[column] + delta for column, delta in deltas.items()})
        .execution_options(synchronize_session=False)
    )
    loaded = db.session.identity_map.get(sa.inspect(Campaign).identity_key_from_primary_key((campaign_id,)))
    if loaded is not None:
        db.session.expire(loaded, list(deltas))  # the next read sees the database's value


def _release_budget(grant: RedPacketGrant) -> None:
    _move_campaign_money(grant.campaign_id, committed_fen=-grant.amount_fen)


def mark_failed(grant: RedPacketGrant, reason: str) -> None:
    """WeChat will not pay this packet: its money goes back to the campaign's budget."""
    if grant.status == "failed":
        return
    grant.status = "failed"
    grant.last_error = reason[:255]
    _release_budget(grant)


def mark_sent(grant: RedPacketGrant, send_listid: str | None) -> None:
    if grant.status in ("reserved", "sending"):
        grant.status = "sent"
        grant.sent_at = utcnow()
    grant.send_listid = send_listid or grant.send_listid


def apply_wechat_status(grant: RedPacketGrant, wechat_status: str) -> None:
    """What reconciliation learned (gethbinfo) becomes the grant's state; refunds are recorded."""
    grant.wechat_status = wechat_status
    grant.reconciled_at = utcnow()
    target = WECHAT_STATUS_TO_GRANT.get(wechat_status)
    if target is None or target == grant.status:
        return
    if target == "failed":
        mark_failed(grant, f"WeChat reported {wechat_status}")
    elif target == "received":
        grant.status, grant.received_at = "received", grant.received_at or utcnow()
    elif target == "refunded":
        grant.status, grant.refunded_at = "refunded", utcnow()
        _move_campaign_money(grant.campaign_id, refunded_fen=grant.amount_fen)
    elif target == "sent":
        mark_sent(grant, None)
    else:
        grant.status = target


def needing_reconciliation(now: dt.datetime, limit: int = 500) -> list[int]:
    """Grants whose fate WeChat knows better than we do: stuck sending, or sent but unclaimed."""
    return list(
        db.session.scalars(
            sa.select(RedPacketGrant.id)
            .where(
                sa.or_(
                    sa.and_(
                        RedPacketGrant.status.in_(("reserved", "sending")),
                        RedPacketGrant.created_at < now - dt.timedelta(minutes=10),
                    ),
                    sa.and_(
                        RedPacketGrant.status.in_(("sent", "refunding")),
                        sa.or_(
                            RedPacketGrant.reconciled_at.is_(None),
                            RedPacketGrant.reconciled_at < now - dt.timedelta(hours=1),
                        ),
                    ),
                )
            )
            .order_by(RedPacketGrant.id)
            .limit(limit)
        )
    )


def spending(campaign: Campaign) -> dict[str, int]:
    """Money committed, paid out (sent or received) and refunded, in fen."""
    rows = db.session.execute(
        sa.select(RedPacketGrant.status, sa.func.count(), sa.func.coalesce(sa.func.sum(RedPacketGrant.amount_fen), 0))
        .where(RedPacketGrant.campaign_id == campaign.id)
        .group_by(RedPacketGrant.status)
    ).all()
    by_status = {status: (int(count), int(total)) for status, count, total in rows}
    paid = sum(by_status.get(s, (0, 0))[1] for s in PAID)
    return {
        "budget_fen": campaign.budget_fen,
        "committed_fen": campaign.committed_fen,
        "paid_fen": paid,
        "refunded_fen": campaign.refunded_fen,
        "granted": sum(count for status, (count, _t) in by_status.items() if status != "failed"),
    }


@dataclass(frozen=True)
class Payouts:
    """A campaign's money (fen) and its red-packet grants by status: (grants, fen) per status."""

    campaign: Campaign
    by_status: dict[str, tuple[int, int]]

    def _fen(self, statuses: tuple[str, ...]) -> int:
        return sum(self.by_status.get(status, (0, 0))[1] for status in statuses)

    @property
    def reserved_fen(self) -> int:
        return self._fen(RESERVED)

    @property
    def paid_fen(self) -> int:
        return self._fen(PAID)

    @property
    def remaining_fen(self) -> int:
        return self.campaign.budget_fen - self.campaign.committed_fen


def payouts(limit: int = 200) -> list[Payouts]:
    """The latest campaigns with their grants by status: two queries whatever the number."""
    campaigns = list(db.session.scalars(sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)))
    rows = db.session.execute(
        sa.select(
            RedPacketGrant.campaign_id,
            RedPacketGrant.status,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(RedPacketGrant.amount_fen), 0),
        )
        .where(RedPacketGrant.campaign_id.in_([c.id for c in campaigns]))
        .group_by(RedPacketGrant.campaign_id, RedPacketGrant.status)
    ).all()
    grouped: dict[int, dict[str, tuple[int, int]]] = {}
    for campaign_id, status, count, total in rows:
        grouped.setdefault(campaign_id, {})[status] = (int(count), int(total))
    return [Payouts(campaign, grouped.get(campaign.id, {})) for campaign in campaigns]
