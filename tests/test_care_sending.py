"""Care sending: channels in order with fallback, the member's rules (consent, opt-out, caps, quiet
hours, locale), paused kinds, the sweeper, delivery reports and the operator controls."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import CliRunner

from app.care import caps, channels, dispatch, notify, operations, preferences, subscriptions
from app.care.cli import care_cli
from app.care.models import Notification, SubscribeGrant
from app.core.clock import BUSINESS_TZ, utcnow
from app.core.db import db
from app.core.models import AuditEntry
from app.gateways import NO_SUBSCRIPTION_GRANT, NOT_FOLLOWING, Refused, Unavailable
from app.members import services
from app.members.models import WechatIdentity
from tests import factories
from tests.care_helpers import at_daytime
from tests.conftest import WECHAT
from tests.wechat_helpers import APP_ID, Callback, event_xml, text_xml

MINIAPP_ID = WECHAT["MINIAPP_APP_ID"]
DROPPED = {"from_tier": "gold", "to_tier": "silver"}


@pytest.fixture(autouse=True)
def daytime():
    """10:00 in Shanghai (the clock ticking): rows due now are outside quiet hours, whenever the suite runs."""
    with at_daytime():
        yield


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BUSINESS_TZ)


def member_on(*, follows: bool = True, miniapp: bool = False, grants: int = 0, marketing: bool = False, **fields):
    """A member reachable on the channels asked for (SMS: every factory member has a phone)."""
    member = factories.member(**fields)
    if follows:
        db.session.add(
            WechatIdentity(
                app_kind="official", app_id=APP_ID, openid=f"o-{member.id}", member_id=member.id, following=True
            )
        )
    if miniapp:
        db.session.add(
            WechatIdentity(app_kind="miniapp", app_id=MINIAPP_ID, openid=f"m-{member.id}", member_id=member.id)
        )
    for n in range(grants):
        subscriptions.record(member.id, f"request-{member.id}-{n}", {"tier-dropped-subscribe": "accept"})
    if marketing:
        services.record_consent(member, policy_version="2026.1", granted=["marketing"], channel="miniapp")
    db.session.flush()
    return member


def planned(member, kind: str = "tier_dropped", period: str = "p1", *, due_at=None, created_at=None, payload=None):
    """A due row, as a planner or ``notify.queue`` leaves it."""
    now = utcnow()
    row = Notification(
        member_id=member.id,
        kind=kind,
        channel="miniapp_subscribe",
        status="planned",
        dedupe_key=f"{kind}:{member.id}:{period}",
        period=period,
        payload=DROPPED if payload is None else payload,
        attempts=0,
        created_at=created_at or now,
        due_at=due_at or now - dt.timedelta(seconds=1),
    )
    db.session.add(row)
    db.session.flush()
    return row


def fresh(row: Notification) -> Notification:
    db.session.expire_all()
    return db.session.get(Notification, row.id)


def available_grants(member) -> int:
    return db.session.scalar(
        sa.select(sa.func.sum(SubscribeGrant.available)).where(SubscribeGrant.member_id == member.id)
    )


# --- channels in order -------------------------------------------------------------------------


def test_a_member_with_a_grant_gets_the_subscribe_message_and_uses_the_grant(app_ctx, fakes):
    member = member_on(miniapp=True, grants=1)
    row = planned(member)
    assert notify.send_due() == 1
    (sent,) = fakes.mini_app.subscribes()
    assert (sent["touser"], sent["template_id"]) == (f"m-{member.id}", "tier-dropped-subscribe")
    assert sent["data"]["thing1"]["value"] == "您的会员等级已调整。"
    assert len(sent["data"]["thing2"]["value"]) <= 20
    assert fresh(row).channel == "miniapp_subscribe" and fresh(row).status == "sent" and fresh(row).wechat_msgid
    assert available_grants(member) == 0
    assert fakes.official_account.templates() == [] and fakes.sms.sent() == []


def test_without_an_unused_grant_the_template_message_goes_instead(app_ctx, fakes):
    member = member_on(miniapp=True, grants=1)
    first, second = planned(member, period="a"), planned(member, period="b")
    notify.send_due()
    assert [fresh(first).channel, fresh(second).channel] == ["miniapp_subscribe", "official_template"]
    assert len(fakes.mini_app.subscribes()) == 1 and len(fakes.official_account.templates()) == 1


@pytest.mark.parametrize(
    ("fail", "code", "used"),
    [
        ("mini", NO_SUBSCRIPTION_GRANT, "official_template"),  # WeChat knows no grant: template
        ("official", NOT_FOLLOWING, "sms"),  # unfollowed since we last heard: SMS
    ],
)
def test_wechat_refusals_that_mean_not_on_this_channel_fall_back_to_the_next(app_ctx, fakes, fail, code, used):
    member = member_on(miniapp=True, grants=1)
    row = planned(member)
    if fail == "mini":
        fakes.mini_app.fail_next("subscribe.send", Refused("no grant", code=code))
    else:
        fakes.mini_app.fail_next("subscribe.send", Refused("no grant", code=NO_SUBSCRIPTION_GRANT))
        fakes.official_account.fail_next("template.send", Refused("require subscribe", code=code))
    notify.send_due()
    row = fresh(row)
    assert (row.status, row.channel, row.attempts) == ("sent", used, 1)
    assert available_grants(member) == 0  # WeChat said none: we believe it


@pytest.mark.parametrize("code", [40001, 42001])
def test_a_token_still_rejected_after_the_clients_refresh_is_retried_later_not_passed_over(app_ctx, fakes, code):
    member = member_on(miniapp=True, grants=1)
    row = planned(member)
    fakes.mini_app.fail_next("subscribe.send", Refused("invalid credential", code=code))
    notify.send_due()
    row = fresh(row)
    assert (row.status, row.attempts, row.error) == ("planned", 1, f"{code}: invalid credential")
    assert row.due_at > utcnow() + dt.timedelta(seconds=50)
    assert fakes.official_account.templates() == [] and fakes.sms.sent() == []
    assert available_grants(member) == 1  # WeChat used none: the grant is back for the retry
    row.due_at = utcnow() - dt.timedelta(seconds=1)
    db.session.flush()
    notify.send_due()
    assert (fresh(row).status, fresh(row).channel, fresh(row).attempts) == ("sent", "miniapp_subscribe", 2)


def test_other_errors_retry_with_backoff_then_fail_keeping_the_reason(app_ctx, fakes):
    member = member_on()
    row = planned(member)
    fakes.official_account.fail_next("template.send", Unavailable("timeout"), times=10)
    waits = []
    for _ in range(dispatch.MAX_ATTEMPTS.value()):
        notify.send_due()
        row = fresh(row)
        waits.append(round((row.due_at - utcnow()).total_seconds() / 10) * 10 if row.status == "planned" else None)
        row.due_at = utcnow() - dt.timedelta(seconds=1)
        db.session.flush()
    assert waits == [60, 300, 1800, None]
    assert (row.status, row.attempts, row.error) == ("failed", 4, "Unavailable: timeout")
    assert fakes.sms.sent() == []  # an unknown outcome is not a reason to try another channel


def test_a_member_no_channel_reaches_is_skipped_with_every_reason(app_ctx, fakes):
    member = member_on(follows=False, phone=None)
    row = planned(member)
    notify.send_due()
    row = fresh(row)
    assert (row.status, row.channel) == ("skipped", "none")
    assert row.error == (
        "no channel reaches the member: miniapp_subscribe: no mini-app account; "
        "official_template: member does not follow the account; sms: no phone number"
    )


def test_the_channel_order_and_templates_are_program_settings(app_ctx, fakes):
    from app.core import tunables

    member = member_on(miniapp=True, grants=1)
    tunables.set_value(channels.CHANNELS.key, {"*": ["sms"]}, actor=("test", "t"))
    tunables.set_value(
        channels.SMS_TEMPLATES.key,
        {"tier_dropped": {"template_code": "SMS_2026", "params": {"tier": "keyword1"}}},
        actor=("test", "t"),
    )
    row = planned(member)
    notify.send_due()
    (sms,) = fakes.sms.sent()
    assert (sms["template_code"], sms["params"], sms["out_id"]) == ("SMS_2026", {"tier": "银卡"}, str(row.id))
    assert fresh(row).channel == "sms"


def test_the_message_is_rendered_in_the_members_locale(app_ctx, fakes):
    english = member_on(locale="en")
    planned(english)
    notify.send_due()
    (sent,) = fakes.official_account.templates()
    assert sent["data"]["first"]["value"] == "Your membership tier has changed."


# --- the member's rules ------------------------------------------------------------------------


def test_opting_out_of_marketing_stops_marketing_at_once_and_service_continues(app_ctx, fakes):
    member = member_on(marketing=True)
    offer, reminder = planned(member, "anniversary", "2026", payload={}), planned(member)
    preferences.set_opted_out(member.id, {"marketing": True}, via="miniapp")
    notify.send_due()
    assert (fresh(offer).status, fresh(offer).error) == ("skipped", "opted out of marketing messages")
    assert fresh(reminder).status == "sent"


def test_withdrawing_marketing_consent_stops_marketing_kinds(app_ctx, fakes):
    member = member_on(marketing=True)
    offer = planned(member, "anniversary", "2026", payload={})
    services.record_consent(member, policy_version="2026.1", granted=[], withdrawn=["marketing"], channel="miniapp")
    notify.send_due()
    assert (fresh(offer).status, fresh(offer).error) == ("skipped", "no consent to marketing")
    assert fakes.official_account.templates() == []


def test_opting_out_of_service_messages_stops_reminders(app_ctx, fakes):
    member = member_on()
    row = planned(member)
    preferences.set_opted_out(member.id, {"service": True}, via="miniapp")
    notify.send_due()
    assert (fresh(row).status, fresh(row).error) == ("skipped", "opted out of service messages")
    preferences.set_opted_out(member.id, {"service": False}, via="miniapp")
    planned(member, period="after")
    notify.send_due()
    assert len(fakes.official_account.templates()) == 1


def _sent_marketing(member, at: dt.datetime, period: str) -> None:
    row = planned(member, "anniversary", period, payload={}, created_at=at)
    row.status, row.attempted_at, row.sent_at = "sent", at, at
    db.session.flush()


def test_one_marketing_message_a_day_the_next_waits_for_the_morning(app_ctx, fakes):
    member = member_on(marketing=True)
    with time_machine.travel(local(2026, 12, 3, 20, 59), tick=False):
        _sent_marketing(member, local(2026, 12, 3, 0, 0), "2020")
        held = planned(member, "anniversary", "2026", payload={})
        service = planned(member)  # service kinds are not capped
        notify.send_due()
    held = fresh(held)
    assert (held.status, held.attempts) == ("planned", 0)
    assert held.due_at == local(2026, 12, 4, 8, 0)  # midnight is quiet hours: the morning
    assert held.error == "postponed: marketing frequency cap"
    assert fresh(service).status == "sent"
    assert caps.next_allowed(held, local(2026, 12, 3, 23, 59)) == local(2026, 12, 4, 0, 0)
    assert caps.next_allowed(held, local(2026, 12, 4, 0, 0)) is None  # a new Shanghai day
    with time_machine.travel(local(2026, 12, 4, 8, 0), tick=False):
        notify.send_due()
    assert fresh(held).status == "sent"


@pytest.mark.parametrize(
    ("now", "held_until"),
    [
        (local(2026, 12, 3, 20, 59, 59), None),
        (local(2026, 12, 3, 21, 0), local(2026, 12, 4, 8, 0)),
        (local(2026, 12, 4, 7, 59, 59), local(2026, 12, 4, 8, 0)),
        (local(2026, 12, 4, 8, 0), None),
    ],
)
def test_a_message_due_before_quiet_hours_but_reached_in_them_is_held_until_eight(app_ctx, fakes, now, held_until):
    member = member_on()
    row = planned(member, due_at=local(2026, 12, 3, 20, 0))  # a backlog, or a retry's backoff
    with time_machine.travel(now, tick=False):
        notify.send_due()
    row = fresh(row)
    if held_until is None:
        assert row.status == "sent"
    else:
        assert (row.status, row.due_at, row.attempts, row.error) == ("planned", held_until, 0, "postponed: quiet hours")
        assert fakes.official_account.templates() == []


def test_a_kind_without_a_text_is_skipped_not_stuck(app_ctx, fakes):
    row = planned(member_on(), kind="someday_new_kind")
    notify.send_due()
    assert (fresh(row).status, fresh(row).error) == ("skipped", "no text for kind someday_new_kind")


def test_a_delivery_that_raises_fails_its_row_and_the_batch_goes_on(app_ctx, fakes, monkeypatch):
    member = member_on()
    broken, fine = planned(member, period="a"), planned(member, period="b")
    real_render = notify.rendering.template_data

    def render(notification):
        if notification.id == broken.id:
            raise RuntimeError("a bug")
        return real_render(notification)

    monkeypatch.setattr(notify.rendering, "template_data", render)
    assert notify.send_due() == 2
    assert (fresh(broken).status, fresh(broken).error) == ("failed", "internal error: RuntimeError")
    assert fresh(fine).status == "sent"


def test_four_marketing_messages_in_seven_days_then_wait_until_the_oldest_leaves_the_week(app_ctx, fakes):
    member = member_on(marketing=True)
    for day, period in ((27, "2021"), (28, "2022"), (30, "2023"), (2, "2024")):
        month = 11 if day > 3 else 12
        _sent_marketing(member, local(2026, month, day, 9, 30), period)
    with time_machine.travel(local(2026, 12, 3, 9, 0), tick=False):
        held = planned(member, "anniversary", "2026", payload={})
        notify.send_due()
    assert fresh(held).due_at == local(2026, 12, 4, 8, 0)  # 27 Nov leaves the window on 4 Dec
    with time_machine.travel(local(2026, 12, 4, 8, 0), tick=False):
        notify.send_due()
    assert fresh(held).status == "sent"
    assert len(fakes.official_account.templates()) == 1


def test_the_week_is_seven_business_days_counted_in_shanghai(app_ctx):
    member = member_on(marketing=True)
    for n, at in enumerate(
        (local(2026, 11, 27, 0, 0), local(2026, 11, 28, 9), local(2026, 11, 29, 9), local(2026, 11, 30, 9))
    ):
        _sent_marketing(member, at, f"20{n}")
    row = planned(member, "anniversary", "2026", payload={})
    assert caps.next_allowed(row, local(2026, 12, 3, 23, 59)) == local(2026, 12, 4, 0, 0)
    assert caps.next_allowed(row, local(2026, 12, 4, 0, 0)) is None


def test_a_message_capped_for_too_long_is_skipped_with_the_reason(app_ctx, fakes):
    member = member_on(marketing=True)
    with time_machine.travel(local(2026, 12, 3, 10, 0), tick=False):
        _sent_marketing(member, local(2026, 12, 3, 9, 0), "2020")
        stale = planned(member, "anniversary", "2026", payload={}, created_at=local(2026, 11, 19, 9))
        notify.send_due()
    assert (fresh(stale).status, fresh(stale).error) == ("skipped", "over the marketing frequency cap for too long")


# --- operator controls, the sweeper, delivery reports ------------------------------------------


def test_a_paused_kind_stays_planned_until_it_is_resumed(app, app_ctx, fakes):
    member = member_on()
    row = planned(member)
    result = CliRunner().invoke(care_cli, ["pause", "tier_dropped", "--reason", "wrong text"], obj=app.cli)
    assert result.exit_code == 0, result.output
    assert notify.send_due() == 0 and notify.send_notification(row.id) == "not due"
    assert fresh(row).status == "planned"
    CliRunner().invoke(care_cli, ["resume", "tier_dropped", "--reason", "text fixed"], obj=app.cli)
    assert notify.send_due() == 1 and fresh(row).status == "sent"
    actions = db.session.scalars(sa.select(AuditEntry.reason).where(AuditEntry.action == "program_setting.changed"))
    assert list(actions) == ["wrong text", "text fixed"]


def test_the_sweeper_puts_back_claims_that_never_called_and_fails_the_one_mid_call(app_ctx, fakes):
    member = member_on()
    never_called, mid_call, recent = (
        planned(member, period="a"),
        planned(member, period="b"),
        planned(member, period="c"),
    )
    assert len(dispatch.claim_batch(3)) == 3
    long_ago = utcnow() - dt.timedelta(minutes=11)
    for row in (never_called, mid_call):
        db.session.execute(sa.update(Notification).where(Notification.id == row.id).values(claimed_at=long_ago))
    db.session.execute(sa.update(Notification).where(Notification.id == mid_call.id).values(attempted_at=long_ago))
    assert dispatch.sweep_stalled() == 2
    assert (fresh(never_called).status, fresh(mid_call).status, fresh(recent).status) == (
        "planned",
        "failed",
        "sending",
    )
    assert fresh(mid_call).error.startswith("outcome unknown")
    notify.send_due()
    assert fresh(never_called).status == "sent"


def test_a_swept_and_reclaimed_row_is_not_sent_by_its_first_claimer(app_ctx, fakes):
    member = member_on()
    row = planned(member)
    ((_, first_claim),) = dispatch.claim_batch(1)
    db.session.execute(
        sa.update(Notification)
        .where(Notification.id == row.id)
        .values(claimed_at=first_claim - dt.timedelta(minutes=11))
    )
    dispatch.sweep_stalled()
    ((_, second_claim),) = dispatch.claim_batch(1)
    assert notify.deliver(row.id, first_claim) == "done"  # the slow first dispatcher wakes up
    assert notify.deliver(row.id, second_claim) == "sent"
    assert len(fakes.official_account.templates()) == 1


def test_subscribe_message_send_events_and_template_reports_update_the_row(client, app_ctx, fakes):
    member = member_on(miniapp=True, grants=1)
    subscribed, templated = planned(member, period="a"), planned(member, period="b")
    notify.send_due()
    subscribed, templated = fresh(subscribed), fresh(templated)
    report = (
        "<SubscribeMsgSentEvent><List><TemplateId><![CDATA[tier-dropped-subscribe]]></TemplateId>"
        f"<MsgID><![CDATA[{subscribed.wechat_msgid}]]></MsgID><ErrorCode><![CDATA[43101]]></ErrorCode>"
        "<ErrorStatus><![CDATA[failed:user refuse to accept the msg]]></ErrorStatus></List></SubscribeMsgSentEvent>"
    )
    xml = event_xml(f"o-{member.id}", "subscribe_msg_sent_event").replace("</xml>", report + "</xml>")
    assert Callback(client).reply(xml) == {}
    Callback(client).reply(
        event_xml(f"o-{member.id}", "TEMPLATESENDJOBFINISH", MsgID=templated.wechat_msgid, Status="success")
    )
    subscribed, templated = fresh(subscribed), fresh(templated)
    assert (subscribed.status, subscribed.delivery_status) == ("failed", "failed:user refuse to accept the msg"[:32])
    assert (templated.status, templated.delivery_status) == ("delivered", "success")


def test_replying_tuiding_in_the_chat_opts_out_of_marketing_and_says_how_to_undo(client, app_ctx, fakes):
    member = member_on(marketing=True)
    reply = Callback(client).reply(text_xml(f"o-{member.id}", "退订"))
    assert "恢复订阅" in reply["Content"]
    assert preferences.opted_out(member.id) == {"service": False, "marketing": True}
    offer = planned(member, "anniversary", "2026", payload={})
    notify.send_due()
    assert fresh(offer).error == "opted out of marketing messages"
    Callback(client).reply(text_xml(f"o-{member.id}", "恢复订阅"))
    assert preferences.opted_out(member.id)["marketing"] is False


def test_resend_makes_one_new_audited_message_and_the_cli_shows_rates(app, app_ctx, fakes):
    member = member_on()
    row = planned(member)
    notify.send_due()
    again = operations.resend(row.id, actor=("staff", "li"), reason="member lost it")
    assert (again.status, again.kind, again.dedupe_key) == ("planned", "tier_dropped", f"resend:{row.id}:1")
    notify.send_due()
    assert len(fakes.official_account.templates()) == 2
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "notification.resent"))
    assert (entry.actor_id, entry.reason, entry.details["resend_id"]) == ("li", "member lost it", again.id)
    failed = planned(member, period="x")
    failed.status = "failed"
    db.session.flush()
    result = CliRunner().invoke(care_cli, ["stats", "--days", "1"], obj=app.cli)
    assert "tier_dropped       official_template        2       2" in result.output
    assert "tier_dropped       miniapp_subscribe        1       0       1       0     0  0.0%" in result.output


def test_the_dry_run_counts_per_kind_and_channel_and_writes_nothing(app, app_ctx):
    from app.points import ledger
    from tests.test_care_reminders import EARNED_IN_OCTOBER_2024

    def with_points(member):
        earning = ledger.Earning(
            member_id=member.id, currency="reward", points=500, idempotency_key=f"dry-{member.id}", source_type="test"
        )
        ledger.earn(earning, at=EARNED_IN_OCTOBER_2024)
        return member

    granted = with_points(member_on(miniapp=True))
    subscriptions.record(granted.id, "request-dry-1", {"points-expiring-subscribe": "accept"})
    with_points(member_on())  # follows: template
    with_points(member_on(follows=False))  # a phone only: SMS
    with_points(member_on(follows=False, phone=None))  # nothing reaches them
    db.session.flush()
    result = CliRunner().invoke(
        care_cli, ["plan", "--kind", "points_expiring", "--date", "2026-10-01", "--dry-run"], obj=app.cli
    )
    assert result.exit_code == 0, result.output
    assert (
        "points_expiring    would plan        4 (miniapp_subscribe 1, none 1, official_template 1, sms 1)"
        in result.output
    )
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0


def test_a_batch_claims_at_most_its_size(app_ctx):
    member = member_on()
    rows = [planned(member, period=str(n)) for n in range(5)]
    claimed = dispatch.claim_batch(2)
    assert [notification_id for notification_id, _ in claimed] == [rows[0].id, rows[1].id]
    assert [fresh(row).status for row in rows] == ["sending", "sending", "planned", "planned", "planned"]


def test_operators_can_reword_a_kind_per_locale_without_a_deploy(app_ctx, fakes):
    from app.core import tunables

    tunables.set_value(
        notify.TEXTS.key,
        {"tier_dropped": {"en": {"remark": "Book a service visit to earn it back."}}},
        actor=("test", "t"),
    )
    planned(member_on(locale="en"), period="a")
    planned(member_on(), period="b")
    notify.send_due()
    english, chinese = sorted(fakes.official_account.templates(), key=lambda call: call["data"]["first"]["value"])
    assert english["data"]["remark"]["value"] == "Book a service visit to earn it back."
    assert english["data"]["first"]["value"] == "Your membership tier has changed."  # the catalog's
    assert chinese["data"]["remark"]["value"] != "Book a service visit to earn it back."
