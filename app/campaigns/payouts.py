"""Red-packet payout through WeChat Pay (``sendredpack``) and reconciliation (``gethbinfo``).

A payout job never holds a database lock across the HTTP call: it marks the grant ``sending``
and commits, calls WeChat with the grant's fixed bill number, then records the answer. On
SYSTEMERROR, a timeout or a broken connection the outcome is unknown, so it retries with the
*same* bill number (WeChat Pay pays one bill number at most once); a definite refusal fails the
grant and returns its money to the budget. Reconciliation asks WeChat about grants still in
flight and about unclaimed packets, and records what it says (including refunds).
"""

from __future__ import annotations

import logging

import requests
from wechatpy.pay import WeChatPayException

from app.campaigns import redpackets
from app.campaigns.models import Campaign, RedPacketGrant
from app.config import current_settings
from app.core.clock import utcnow
from app.core.db import db
from app.jobs import job
from app.wechat.clients import pay_client

log = logging.getLogger(__name__)

#: Errors after which the same bill number must simply be tried again (WeChat: "请使用原单号重试").
RETRY_SAME_BILL = {"SYSTEMERROR", "PROCESSING", "FREQ_LIMIT", "SENDNUMLIMIT_RETRY"}


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
    assert campaign is not None
    grant.status = "sending"
    grant.attempts += 1
    request = {
        "user_id": grant.openid,
        "total_amount": grant.amount_fen,
        "send_name": campaign.send_name,
        "act_name": campaign.act_name,
        "wishing": campaign.wishing,
        "remark": campaign.remark,
        "client_ip": current_settings().PUBLIC_IP,
        "out_trade_no": grant.bill_no,
    }
    db.session.commit()  # the attempt is on record before money may move

    try:
        result = pay_client().redpack.send(**request)
    except WeChatPayException as exc:
        return _refused(grant_id, exc)
    except requests.RequestException as exc:
        _note(grant_id, f"network: {type(exc).__name__}")
        raise PayoutPending(f"grant {grant_id}: {type(exc).__name__}; retrying with the same bill number") from exc

    grant = db.session.get(RedPacketGrant, grant_id, with_for_update=True)
    assert grant is not None
    redpackets.mark_sent(grant, result.get("send_listid"))
    return grant.status


def _note(grant_id: int, error: str) -> None:
    grant = db.session.get(RedPacketGrant, grant_id, with_for_update=True)
    if grant is not None:
        grant.last_error = error[:255]
        db.session.commit()


def _refused(grant_id: int, exc: WeChatPayException) -> str:
    code = (exc.errcode or exc.result_code or exc.return_code or "UNKNOWN").upper()
    if code in RETRY_SAME_BILL or exc.return_code != "SUCCESS":
        _note(grant_id, f"{code}: {exc.errmsg or exc.return_msg}")
        raise PayoutPending(f"grant {grant_id}: {code}; retrying with the same bill number") from exc
    grant = db.session.get(RedPacketGrant, grant_id, with_for_update=True)
    assert grant is not None
    redpackets.mark_failed(grant, f"{code}: {exc.errmsg or ''}")
    log.warning("red packet %s refused by WeChat Pay: %s", grant_id, code)
    return "failed"


@job("payments", timeout=1800)
def reconcile_red_packets() -> dict[str, int]:
    """Every 30 minutes: ask WeChat (gethbinfo) about grants in flight and unclaimed packets."""
    counts: dict[str, int] = {}
    for grant_id in redpackets.needing_reconciliation(utcnow()):
        grant = redpackets.lock_grant(grant_id)
        if grant is None or grant.bill_no is None:
            continue
        try:
            info = pay_client().redpack.query(grant.bill_no)
        except WeChatPayException as exc:
            if (exc.errcode or "").upper() == "NOT_FOUND" and grant.status in ("reserved", "sending"):
                # It never reached WeChat: paying it now with the same bill number is safe.
                pay_out.after_commit(grant.id, job_id=f"red-packet-{grant.id}")
                counts["resent"] = counts.get("resent", 0) + 1
            continue
        except requests.RequestException:
            continue
        redpackets.apply_wechat_status(grant, str(info.get("status", "")).upper())
        counts[grant.status] = counts.get(grant.status, 0) + 1
        db.session.commit()
    return counts
