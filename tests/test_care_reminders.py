"""Care reminders: planned in the database once per (member, kind, period), sent once, in the right hours."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import CliRunner

from app.care import dispatch, notify, planning, rules
from app.care.cli import care_cli
from app.care.models import Notification
from app.core.clock import BUSINESS_TZ, utcnow
from app.core.db import db
from app.gateways import Unavailable
from app.members import services
from app.members.models import WechatIdentity
from app.points import ledger
from app.tiers.models import TierState
from tests import factories
from tests.care_helpers import at_daytime
from tests.conftest import run_concurrently
from tests.wechat_helpers import APP_ID

#: 30 days before 31 October 2026, the last day of the lots earned in October 2024 (24 months).
PLAN_DAY = dt.date(2026, 10, 1)
EARNED_IN_OCTOBER_2024 = dt.datetime(2024, 10, 15, 4, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def daytime():
    """10:00 in Shanghai (the clock ticking): sends happen outside quiet hours, whenever the suite runs."""
    with at_daytime():
        yield


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BUSINESS_TZ)


def follower(points: int = 0, *, earned_at: dt.datetime = EARNED_IN_OCTOBER_2024, **fields):
    member = factories.member(**fields)
    db.session.add(
        WechatIdentity(app_kind="official", app_id=APP_ID, openid=f"o-{member.id}", member_id=member.id, following=True)
    )
    if points:
        ledger.earn(
            ledger.Earning(
                member_id=member.id, currency="reward", points=points, idempotency_key=f"seed-{member.id}",
                source_type="test",
            ),
            at=earned_at,
        )  # fmt: skip
    db.session.flush()
    return member


def reminders(kind: str | None = None) -> list[Notification]:
    query = sa.select(Notification).order_by(Notification.id)
    if kind:
        query = query.where(Notification.kind == kind)
    return list(db.session.scalars(query))


def test_points_expiring_in_30_days_are_planned_once_for_09_00_with_the_amount_at_send_time(app_ctx, fakes):
    member = follower(1_200)
    follower(300, earned_at=dt.datetime(2024, 11, 15, tzinfo=dt.UTC))  # expires a month later: not yet
    assert planning.plan_points_expiring(PLAN_DAY) == 1
    assert planning.plan_points_expiring(PLAN_DAY) == 0  # planning again changes nothing
    (reminder,) = reminders("points_expiring")
    assert (reminder.member_id, reminder.period, reminder.status) == (member.id, "2026-10-31:30d", "planned")
    assert reminder.due_at == local(2026, 10, 1, 9)
    ledger.spend(member.id, 200, idempotency_key="spend-1", source_type="test")

    assert notify.send_due() == 1
    (sent,) = fakes.official_account.templates()
    assert sent["touser"] == f"o-{member.id}" and sent["template_id"] == "points-expiring-template"
    assert sent["data"]["keyword1"]["value"] == "1,000 积分" and sent["data"]["keyword2"]["value"] == "2026-10-31"
    assert reminders("points_expiring")[0].status == "sent"
    assert notify.send_due() == 0  # nothing twice


def test_a_reminder_whose_points_were_spent_meanwhile_is_skipped_not_sent(app_ctx, fakes):
    member = follower(500)
    planning.plan_points_expiring(PLAN_DAY)
    ledger.spend(member.id, 500, idempotency_key="spend-all", source_type="test")
    notify.send_due()
    assert fakes.official_account.templates() == []
    assert (reminders()[0].status, reminders()[0].error) == ("skipped", "nothing to remind of any more")


def test_withdrawing_consent_after_planning_stops_the_send(app_ctx, fakes):
    member = follower(500)
    planning.plan_points_expiring(PLAN_DAY)
    services.record_consent(
        member, policy_version="2026.1", granted=[], withdrawn=["service_notifications"], channel="miniapp"
    )
    notify.send_due()
    assert fakes.official_account.templates() == []
    assert reminders()[0].error == "no consent to service notifications"


def test_anniversaries_and_tiers_at_risk_are_planned_for_the_day(app_ctx, fakes):
    today = dt.date(2026, 11, 20)
    two_years = follower(enrolled_at=local(2024, 11, 20, 23, 30))  # late evening local: still the 20th
    services.record_consent(two_years, policy_version="2026.1", granted=["marketing"], channel="miniapp")
    follower(enrolled_at=local(2025, 11, 21, 0, 30))  # the 21st
    follower(enrolled_at=local(2026, 11, 20, 10))  # joined today: no anniversary yet
    at_risk, kept = follower(), follower()
    for member, last in ((at_risk, dt.datetime(2025, 1, 1, tzinfo=dt.UTC)), (kept, utcnow())):
        db.session.merge(
            TierState(member_id=member.id, tier="gold", review_on=dt.date(2026, 12, 20), last_qualifying_at=last)
        )
    db.session.flush()
    assert planning.plan_anniversaries(today) == 1
    assert planning.plan_tiers_at_risk(today) == 1
    assert [(r.kind, r.member_id, r.period) for r in reminders()] == [
        ("anniversary", two_years.id, "2026"),
        ("tier_at_risk", at_risk.id, "2026-12-20"),
    ]
    with time_machine.travel(local(2026, 11, 20, 9, 1), tick=False):
        assert notify.send_due() == 2
    texts = {call["template_id"]: call["data"] for call in fakes.official_account.templates()}
    assert texts["anniversary-template"]["keyword1"]["value"] == "与我们同行 2 年"
    assert texts["tier-at-risk-template"]["keyword2"]["value"] == "2026-12-20"


@pytest.mark.parametrize(
    ("at", "due"),
    [
        (local(2026, 12, 1, 20, 59), local(2026, 12, 1, 20, 59)),
        (local(2026, 12, 1, 21, 0), local(2026, 12, 2, 8, 0)),
        (local(2026, 12, 2, 7, 59), local(2026, 12, 2, 8, 0)),
        (local(2026, 12, 2, 8, 0), local(2026, 12, 2, 8, 0)),
    ],
)
def test_quiet_hours_hold_non_urgent_messages_until_eight(app_ctx, at, due):
    assert rules.outside_quiet_hours("tier_upgrade", at) == due
    assert rules.outside_quiet_hours("chat_reply", at) == at  # an answer to the member goes at once


def test_a_tier_upgrade_at_night_waits_for_the_morning(app_ctx, fakes):
    member = follower()
    with time_machine.travel(local(2026, 12, 1, 23, 0), tick=False):
        notify.queue(member.id, "tier_upgrade", period="gold", payload={"from_tier": "silver", "to_tier": "gold"})
        assert notify.send_due() == 0
    assert fakes.official_account.templates() == []
    with time_machine.travel(local(2026, 12, 2, 8, 0, 1), tick=False):
        assert notify.send_due() == 1
    assert len(fakes.official_account.templates()) == 1


def test_a_failed_send_is_retried_with_backoff_then_fails_with_its_reason(app_ctx, fakes):
    follower(500)
    planning.plan_points_expiring(PLAN_DAY)
    fakes.official_account.fail_next("template.send", Unavailable("timeout"), times=10)
    notify.send_due()
    (row,) = reminders()
    assert (row.status, row.attempts, row.error) == ("planned", 1, "Unavailable: timeout")
    assert row.due_at > utcnow() + dt.timedelta(seconds=50)
    for _ in range(3):
        row.due_at = utcnow() - dt.timedelta(seconds=1)
        db.session.flush()
        notify.send_due()
    assert (row.status, row.attempts) == ("failed", dispatch.MAX_ATTEMPTS.value())


def test_the_sweeper_fails_a_send_left_in_flight_instead_of_sending_it_twice(app_ctx):
    member = follower()
    notify.queue(member.id, "tier_dropped", period="x", payload={"from_tier": "gold", "to_tier": "silver"})
    stalled, recent = reminders()[0], None
    stalled.status, stalled.attempted_at = "sending", utcnow() - dt.timedelta(minutes=11)
    notify.queue(member.id, "tier_dropped", period="y", payload={"from_tier": "gold", "to_tier": "silver"})
    recent = reminders()[1]
    recent.status, recent.attempted_at = "sending", utcnow() - dt.timedelta(minutes=2)
    db.session.flush()
    assert dispatch.sweep_stalled() == 1
    db.session.expire_all()
    assert (stalled.status, recent.status) == ("failed", "sending")
    assert stalled.error.startswith("outcome unknown")


def test_the_cli_dry_run_counts_without_writing(app, app_ctx):
    follower(500)
    result = CliRunner().invoke(
        care_cli, ["plan", "--kind", "points_expiring", "--date", "2026-10-01", "--dry-run"], obj=app.cli
    )
    assert (
        "would plan        1" in result.output.replace("points_expiring", "").strip() or "would plan" in result.output
    )
    assert "1" in result.output.split("would plan")[1]
    assert reminders() == []


@pytest.mark.postgres
@pytest.mark.committed
def test_two_planners_at_once_make_one_row_per_member(app):
    with app.app_context():
        members = [follower(100).id for _ in range(20)]
        db.session.commit()

    def plan_in_its_own_session(_: int) -> int:
        with app.app_context():
            planned = planning.plan_points_expiring(PLAN_DAY)
            db.session.commit()
            return planned

    results = run_concurrently(4, plan_in_its_own_session)
    assert sum(results) == len(members), results
    with app.app_context():
        assert sorted(r.member_id for r in reminders()) == sorted(members)


@pytest.mark.postgres
@pytest.mark.committed
def test_three_dispatchers_over_due_rows_send_each_exactly_once(app, fakes):
    with app.app_context():
        members = [follower(100).id for _ in range(300)]
        db.session.commit()
        planning.plan_points_expiring(PLAN_DAY)
        db.session.commit()

    def dispatcher(_: int) -> int:
        with app.app_context():
            return notify.send_due()

    handled = run_concurrently(3, dispatcher)
    assert sum(handled) == len(members)
    sent_to = [call["touser"] for call in fakes.official_account.templates()]
    assert sorted(sent_to) == sorted(f"o-{member_id}" for member_id in members)
    with app.app_context():
        assert {row.status for row in reminders()} == {"sent"}
