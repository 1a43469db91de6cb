"""Red-packet payout through WeChat Pay and reconciliation, via the payments gateway.

A payout job never holds a database lock across the call: it marks the grant ``sending`` and
commits, calls WeChat with the grant's fixed bill number, then records the answer. When the
outcome is unknown (SYSTEMERROR, a timeout, a broken connection: ``gateways.Unavailable``) it
retries with the *same* bill number (WeChat Pay pays one bill number at most once); a definite
refusal (``gateways.PaymentRefused``) fails the grant and returns its money to the budget.
Reconciliation asks WeChat about grants still in flight and about unclaimed packets, and records
what it says (including refunds).
"""

from __future__ import annotations

import logging

from app import gateways
from app.campaigns import redpackets
from app.campaigns.models import Campaign, RedPacketGrant
from app.config import current_settings
from app.core.clock import utcnow
from app.core.db import db
from app.jobs import job

log = logging.getLogger(__name__)


class PayoutPending(RuntimeError):
    """The outcome is unknown (SYSTEMERROR, timeout): RQ retries the job with the same bill number."""


@job("payments", retry=(15, 60, 300, 900, 3600))
def pay_out(grant_id: int) -> str:
    grant = redpackets.lock_grant(grant_id)
    if grant is None:
        if db.session.get(RedPacketGrant, grant_id) is None:
            return "missing"
        # Another worker (a payout or reconciliation) holds it right now: try again later rather
        # than end the retry chain of a packet whose outcome may still be unknown.
        raise PayoutPending(f"grant {grant_id} is locked by another worker")
    if grant.status not in ("reserved", "sending"):
        return grant.status
    campaign = db.session.get(Campaign, grant.campaign_id)
    assert campaign is not None and grant.bill_no is not None
    grant.status = "sending"
    grant.attempts += 1
    order = gateways.RedPacketOrder(
        bill_no=grant.bill_no,
        openid=grant.openid,
        amount_fen=grant.amount_fen,
        send_name=campaign.send_name,
        act_name=campaign.act_name,
        wishing=campaign.wishing,
        remark=campaign.remark,
        client_ip=current_settings().PUBLIC_IP,
    )
    db.session.commit()  # the attempt is on record before money may move

    try:
        listid = gateways.payments().send_red_packet(order)
    except gateways.PaymentRefused as exc:
        grant = db.session.get(RedPacketGrant, grant_id, with_for_update=True)
        assert grant is not None
        redpackets.mark_failed(grant, f"{exc.code}: {exc.message}")
        log.warning("red packet %s refused by WeChat Pay: %s", grant_id, exc.code)
        return "failed"
    except gateways.Unavailable as exc:
        _note(grant_id, f"{exc.code or 'network'}: {exc.message or exc}")
        raise PayoutPending(f"grant {grant_id}: {exc.code or exc}; retrying with the same bill number") from exc

    grant = db.session.get(RedPacketGrant, grant_id, with_for_update=True)
    assert grant is not None
    redpackets.mark_sent(grant, listid)
    return grant.status


def _note(grant_id: int, error: str) -> None:
    grant = db.session.get(RedPacketGrant, grant_id, with_for_update=True)
    if grant is not None:
        grant.last_error = error[:255]
        db.session.commit()


@job("payments", timeout=1800)
def reconcile_red_packets() -> dict[str, int]:
    """Every 30 minutes: ask WeChat (gethbinfo) about grants in flight and unclaimed packets."""
    counts: dict[str, int] = {}
    for grant_id in redpackets.needing_reconciliation(utcnow()):
        grant = redpackets.lock_grant(grant_id)
        if grant is None or grant.bill_no is None:
            continue
        try:
            status = gateways.payments().red_packet_status(grant.bill_no)
        except gateways.GatewayError:
            continue
        if status is None:
            if grant.status in ("reserved", "sending"):
                # It never reached WeChat: paying it now with the same bill number is safe.
                pay_out.after_commit(grant.id, job_id=f"red-packet-{grant.id}")
                counts["resent"] = counts.get("resent", 0) + 1
            continue
        redpackets.apply_wechat_status(grant, status)
        counts[grant.status] = counts.get(grant.status, 0) + 1
        db.session.commit()
    return counts
