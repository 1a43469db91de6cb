"""Red-packet sign-up: budget, caps, once per member, payout retries, reconciliation."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
import sqlalchemy as sa

from app.campaigns import redpackets
from app.campaigns.models import Campaign, RedPacketGrant
from app.campaigns.payouts import PayoutPending
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.gateways import Unavailable
from app.jobs import run_job
from tests import factories
from tests.conftest import run_concurrently
from tests.wechat_helpers import Callback, SentMessages, event_xml, text_xml


@pytest.fixture
def pay(fakes):
    """WeChat Pay (the in-process fake): pays a bill number at most once, can fail on purpose."""
    return fakes.payments


@pytest.fixture(autouse=True)
def sent(fakes):
    return SentMessages(fakes.official_account)


def make_campaign(**overrides) -> Campaign:
    now = utcnow()
    fields = dict(
        code="SPRING",
        name="春季扫码领红包",
        status="active",
        budget_fen=10_000,
        amount_fen=500,
        daily_cap=None,
        starts_at=now - dt.timedelta(hours=1),
        ends_at=now + dt.timedelta(days=7),
        channels=["qr", "password"],
        password="开春红包",
        send_name="一汽大众",
        wishing="祝您用车愉快",
        act_name="春季活动",
        remark="扫码领取",
    )
    fields.update(overrides)
    campaign = Campaign(**fields)
    db.session.add(campaign)
    db.session.flush()
    return campaign


def grants():
    return db.session.scalars(sa.select(RedPacketGrant).order_by(RedPacketGrant.id)).all()


def test_a_campaign_scan_enrolls_and_pays_a_packet_once(client, app_ctx, pay, sent):
    make_campaign()
    callback = Callback(client)
    assert "红包" in callback.reply(event_xml("o-rp-1", "subscribe", EventKey="qrscene_camp:SPRING"))["Content"]
    answer = sent.last_text_to("o-rp-1")
    assert "5.00" in answer and "入会积分" in answer
    [grant] = grants()
    assert (grant.status, grant.amount_fen, grant.openid) == ("sent", 500, "o-rp-1")
    assert len(grant.bill_no) == 28 and grant.bill_no.startswith("1900000109")
    callback.reply(event_xml("o-rp-1", "SCAN", EventKey="camp:SPRING"))
    assert "已经领取过" in sent.last_text_to("o-rp-1")
    assert pay.paid == {grant.bill_no: 1}


def test_the_password_works_too_and_checks_the_channel(client, app_ctx, sent):
    make_campaign(channels=["password"])
    callback = Callback(client)
    callback.reply(text_xml("o-pw", "开春红包"))
    assert "5.00" in sent.last_text_to("o-pw")
    callback.reply(event_xml("o-qr", "subscribe", EventKey="qrscene_camp:SPRING"))
    assert "未开放" in sent.last_text_to("o-qr")


def test_budget_daily_cap_and_window(client, app_ctx, sent):
    make_campaign(budget_fen=1_000, daily_cap=5)  # two packets' worth
    callback = Callback(client)
    for i in range(3):
        callback.reply(event_xml(f"o-{i}", "subscribe", EventKey="qrscene_camp:SPRING"))
    assert "5.00" in sent.last_text_to("o-1")
    assert "发完" in sent.last_text_to("o-2")
    assert db.session.scalar(sa.select(Campaign.committed_fen)) == 1_000
    make_campaign(code="DAILY", password=None, daily_cap=1, budget_fen=100_000)
    callback.reply(event_xml("o-d1", "subscribe", EventKey="qrscene_camp:DAILY"))
    callback.reply(event_xml("o-d2", "subscribe", EventKey="qrscene_camp:DAILY"))
    assert "明天再来" in sent.last_text_to("o-d2")
    make_campaign(code="OVER", password=None, ends_at=utcnow() - dt.timedelta(minutes=1))
    callback.reply(event_xml("o-late", "subscribe", EventKey="qrscene_camp:OVER"))
    assert "未开放" in sent.last_text_to("o-late")


def test_systemerror_is_retried_with_the_same_bill_number(client, app_ctx, pay):
    make_campaign()
    pay.fail_next("sendredpack", Unavailable("系统繁忙", code="SYSTEMERROR"))
    Callback(client).reply(event_xml("o-se", "subscribe", EventKey="qrscene_camp:SPRING"))
    [grant] = grants()
    assert (grant.status, grant.attempts) == ("sending", 1)
    assert "SYSTEMERROR" in grant.last_error
    assert run_job("app.campaigns.payouts.pay_out", (grant.id,)) == "sent"
    assert pay.requests() == [grant.bill_no, grant.bill_no]
    assert pay.paid == {grant.bill_no: 1}


def test_a_definite_refusal_fails_the_grant_and_returns_the_money_to_the_budget(client, app_ctx, pay):
    campaign = make_campaign()
    pay.refuse_next("NOTENOUGH")
    Callback(client).reply(event_xml("o-nf", "subscribe", EventKey="qrscene_camp:SPRING"))
    [grant] = grants()
    db.session.refresh(campaign)
    assert (grant.status, campaign.committed_fen) == ("failed", 0)
    assert "NOTENOUGH" in grant.last_error and pay.paid == {}


def test_money_returned_by_a_refusal_keeps_sign_ups_committed_meanwhile(app_ctx):
    """The campaign row is loaded before the WeChat call; sign-ups commit during it. Releasing the
    refused packet must subtract from the database's value, not from the copy loaded earlier."""
    campaign = make_campaign()
    member = factories.member()
    grant = RedPacketGrant(
        campaign_id=campaign.id, member_id=member.id, openid="o-late", amount_fen=500, business_date=business_today()
    )
    db.session.add(grant)
    campaign.committed_fen = 500
    db.session.flush()
    assert campaign.committed_fen == 500  # this session's copy, as pay_out holds it during the call
    db.session.execute(
        sa.text("UPDATE campaigns SET committed_fen = committed_fen + 1500 WHERE id = :id"), {"id": campaign.id}
    )
    redpackets.mark_failed(grant, "NOTENOUGH")
    db.session.flush()
    assert db.session.scalar(sa.select(Campaign.committed_fen).where(Campaign.id == campaign.id)) == 1500


@pytest.mark.postgres
@pytest.mark.committed
def test_a_payout_meeting_a_locked_grant_retries_later_instead_of_giving_up(app):
    from app.campaigns import payouts

    with app.app_context():
        campaign = make_campaign()
        grant = RedPacketGrant(
            campaign_id=campaign.id,
            member_id=factories.member().id,
            openid="o-locked",
            amount_fen=500,
            business_date=business_today(),
        )
        db.session.add(grant)
        db.session.commit()
        grant_id = grant.id
    assert db.engine is not None
    with db.engine.connect() as reconciliation, app.app_context():
        reconciliation.execute(sa.text("SELECT id FROM red_packet_grants WHERE id = :id FOR UPDATE"), {"id": grant_id})
        with pytest.raises(PayoutPending):
            payouts.pay_out(grant_id)
        db.session.rollback()


def test_a_draft_or_ended_campaigns_password_is_ordinary_chat(app_ctx):
    make_campaign(status="draft")
    make_campaign(code="OLD", password="旧口令", ends_at=utcnow() - dt.timedelta(days=1))
    assert redpackets.campaign_by_password("开春红包") is None
    assert redpackets.campaign_by_password("旧口令") is None
    running = make_campaign(code="LIVE", password="新口令")
    assert redpackets.campaign_by_password(" 新口令 ") == running


@pytest.mark.parametrize(
    ("wechat_status", "grant_status"), [("RECEIVED", "received"), ("REFUND", "refunded"), ("FAILED", "failed")]
)
def test_reconciliation_records_what_wechat_says(client, app_ctx, pay, wechat_status, grant_status):
    campaign = make_campaign()
    Callback(client).reply(event_xml("o-rc", "subscribe", EventKey="qrscene_camp:SPRING"))
    [grant] = grants()
    pay.statuses[grant.bill_no] = wechat_status
    run_job("app.campaigns.payouts.reconcile_red_packets", ())
    db.session.refresh(grant)
    db.session.refresh(campaign)
    assert grant.status == grant_status and grant.wechat_status == wechat_status
    assert campaign.refunded_fen == (500 if wechat_status == "REFUND" else 0)
    assert campaign.committed_fen == (0 if wechat_status == "FAILED" else 500)


@pytest.mark.postgres
@pytest.mark.committed
def test_100_concurrent_signups_with_30_percent_pay_failures_pay_exactly_40_packets_once(app, pay):
    pay.failure_rate = 0.3  # half answer SYSTEMERROR, half pay and lose the answer
    with app.app_context():
        make_campaign(budget_fen=40 * 500)
        db.session.commit()

    def sign_up(i):
        response = Callback(app.test_client()).post(
            event_xml(f"o-burst-{i}", "subscribe", EventKey="qrscene_camp:SPRING")
        )
        return response.status_code

    assert run_concurrently(100, sign_up) == [200] * 100
    with app.app_context():  # the retries RQ would make, until nothing is in flight
        for _round in range(30):
            open_ids = db.session.scalars(
                sa.select(RedPacketGrant.id).where(RedPacketGrant.status.in_(("reserved", "sending")))
            ).all()
            db.session.commit()
            if not open_ids:
                break
            for grant_id in open_ids:
                with contextlib.suppress(PayoutPending):  # RQ would retry it later
                    run_job("app.campaigns.payouts.pay_out", (grant_id,))
        all_grants = db.session.scalars(sa.select(RedPacketGrant)).all()
        campaign = db.session.scalar(sa.select(Campaign))
        assert len(all_grants) == 40
        assert len({g.member_id for g in all_grants}) == 40
        assert {g.status for g in all_grants} == {"sent"}
        assert campaign.committed_fen == campaign.budget_fen == 20_000
        assert sorted(pay.paid) == sorted(g.bill_no for g in all_grants)
        assert set(pay.paid.values()) == {1}
        assert len(pay.requests()) > 40  # failures really happened and were retried with the same bills
