"""Every SPEC §8 trigger planned once per (member, kind, period): birthdays, welcome, maintenance,
insurance, bookings and ratings, and the churn-risk win-back from the nightly lifecycle stage."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from alembic.migration import MigrationContext
from alembic.operations import Operations
from click.testing import CliRunner

from app.care import lifecycle, maintenance, notify, planning
from app.care.cli import care_cli
from app.care.models import CallbackTask, MaintenanceInterval, MemberLifecycle, MemberLifecycleHistory
from app.core import events
from app.core.clock import BUSINESS_TZ, utcnow
from app.core.db import db
from app.core.events import BenefitUsed, BookingCancelled, BookingConfirmed, BookingRatedLow
from app.core.security import cipher
from app.members import activation, services
from app.members.models import Member, MiniappSession, Vehicle, WechatIdentity
from app.points import ledger
from tests import dms_events, factories
from tests.conftest import run_concurrently
from tests.test_care_reminders import reminders
from tests.wechat_helpers import APP_ID

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations" / "versions"


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BUSINESS_TZ)


def follower(**fields) -> Member:
    member = factories.member(**fields)
    if "enrolled_at" in fields and member.activated_at:
        member.activated_at = fields["enrolled_at"]  # activated when they joined
    db.session.add(
        WechatIdentity(app_kind="official", app_id=APP_ID, openid=f"o-{member.id}", member_id=member.id, following=True)
    )
    db.session.flush()
    return member


def greeted_follower(**fields) -> Member:
    """A follower who accepted marketing messages (birthday greetings are marketing)."""
    member = follower(**fields)
    services.record_consent(
        member, policy_version="2026.1", granted=["service_notifications", "marketing"], channel="miniapp"
    )
    return member


def sent_templates(fakes) -> dict[str, dict]:
    return {call["template_id"]: call["data"] for call in fakes.official_account.templates()}


# --- birthdays ----------------------------------------------------------------------------------


def test_the_month_day_follows_the_encrypted_birthday_wherever_it_is_set(app_ctx):
    member = factories.member(birthday=dt.date(1990, 12, 3))
    assert member.birth_month_day == 1203
    member.birthday = dt.date(1991, 1, 9)
    assert member.birth_month_day == 109
    member.birthday = None  # erasure on withdrawal
    assert member.birth_month_day is None
    stored = db.session.execute(sa.text("SELECT birthday FROM members WHERE id = :id"), {"id": member.id}).scalar()
    assert stored is None or "1991" not in stored  # the full date stays encrypted


def test_birthdays_are_greeted_at_nine_on_the_day_once(app_ctx, fakes):
    today = dt.date(2026, 12, 3)
    born_today = greeted_follower(birthday=dt.date(1990, 12, 3))
    greeted_follower(birthday=dt.date(1990, 12, 4))
    greeted_follower(birthday=dt.date(1985, 12, 3), status="closed")
    assert planning.plan_birthdays(today) == 1
    assert planning.plan_birthdays(today) == 0
    (row,) = reminders("birthday")
    assert (row.member_id, row.period, row.due_at) == (born_today.id, "2026", local(2026, 12, 3, 9))
    with time_machine.travel(local(2026, 12, 3, 8, 59), tick=False):
        assert notify.send_due() == 0
    with time_machine.travel(local(2026, 12, 3, 9, 0, 1), tick=False):
        assert notify.send_due() == 1
    assert sent_templates(fakes)["birthday-template"]["keyword2"]["value"] == "2026-12-03"


@pytest.mark.parametrize(
    ("today", "greeted"),
    [
        (dt.date(2027, 2, 28), True),  # common year: the 28th
        (dt.date(2027, 3, 1), False),
        (dt.date(2028, 2, 28), False),  # leap year: wait for the 29th
        (dt.date(2028, 2, 29), True),
    ],
)
def test_a_29_february_birthday_is_greeted_on_the_28th_in_common_years(app_ctx, today, greeted):
    leapling = follower(birthday=dt.date(1996, 2, 29))
    follower(birthday=dt.date(1996, 2, 28))  # greeted on the 28th every year
    planning.plan_birthdays(today)
    assert (leapling.id in {r.member_id for r in reminders("birthday")}) is greeted


def test_a_birthday_corrected_after_planning_is_not_greeted(app_ctx, fakes):
    member = greeted_follower(birthday=dt.date(1990, 12, 3))
    planning.plan_birthdays(dt.date(2026, 12, 3))
    member.birthday = dt.date(1990, 6, 3)
    db.session.flush()
    with time_machine.travel(local(2026, 12, 3, 9, 1), tick=False):
        notify.send_due()
    assert fakes.official_account.templates() == []
    assert reminders("birthday")[0].error == "nothing to remind of any more"


# --- welcome --------------------------------------------------------------------------------------


def test_activation_welcomes_the_member_once_with_the_tier(app_ctx, fakes):
    member = follower(status="pre_enrolled")
    activation.activate(member)
    activation.activate(member)  # idempotent
    activation.credit_welcome_gift(member)  # another path to the gift: still one welcome
    (row,) = reminders("welcome")
    assert (row.member_id, row.period, row.status) == (member.id, "welcome", "planned")
    with time_machine.travel(local(2026, 12, 2, 12), tick=False):
        row.due_at = utcnow()
        db.session.flush()
        assert notify.send_due() == 1
    data = sent_templates(fakes)["welcome-template"]
    assert data["keyword1"]["value"] == "银卡"  # the member's tier, in the member's language
    assert "24 小时道路救援" in data["keyword2"]["value"]


def test_a_newcomer_without_consent_is_welcomed_only_once_consent_is_given(app_ctx):
    member = services.create_member(channel="advisor_qr", status="active")
    activation.credit_welcome_gift(member)
    assert reminders("welcome") == []
    services.record_consent(member, policy_version="2026.1", granted=["service_notifications"], channel="miniapp")
    activation.credit_welcome_gift(member)
    assert [r.member_id for r in reminders("welcome")] == [member.id]


# --- maintenance ----------------------------------------------------------------------------------


def serviced_car(owner: Member, *, bought: dt.date, serviced: dt.date, km: int, model_code: str = "MAGOTAN"):
    car = factories.vehicle(owner=owner, purchase_date=bought, model_code=model_code)
    services.record_service(car, serviced, km)
    db.session.flush()
    return car


def test_the_due_date_is_the_interval_in_months_or_the_extrapolated_km_whichever_first(app_ctx):
    interval = MaintenanceInterval(model_code="x", months=12, km=10_000)
    owner = factories.member()
    normal = serviced_car(owner, bought=dt.date(2024, 12, 10), serviced=dt.date(2025, 12, 10), km=9_000)
    heavy = serviced_car(owner, bought=dt.date(2025, 6, 10), serviced=dt.date(2025, 12, 10), km=15_000)
    new = factories.vehicle(owner=owner, purchase_date=dt.date(2026, 3, 31))
    assert maintenance.due_on(normal, interval) == dt.date(2026, 12, 10)  # 24.7 km/day: months first
    assert maintenance.due_on(heavy, interval) == dt.date(2026, 4, 11)  # 82 km/day: 10,000 km in 122 days
    assert maintenance.due_on(new, interval) == dt.date(2027, 3, 31)  # never serviced: from the purchase
    assert maintenance.due_on(new, MaintenanceInterval(model_code="y", months=11, km=1)) == dt.date(2027, 2, 28)


@pytest.mark.postgres
def test_the_sql_due_date_the_planner_plans_with_is_due_on(app_ctx):
    owner = factories.member()
    cars = [
        serviced_car(owner, bought=dt.date(2024, 12, 10), serviced=dt.date(2025, 12, 10), km=9_000),
        serviced_car(owner, bought=dt.date(2025, 6, 10), serviced=dt.date(2025, 12, 10), km=15_000),
        serviced_car(owner, bought=dt.date(2025, 6, 10), serviced=dt.date(2025, 12, 10), km=15_001, model_code="ID4"),
        serviced_car(owner, bought=dt.date(2025, 1, 31), serviced=dt.date(2025, 1, 31), km=700),
        serviced_car(owner, bought=dt.date(2024, 2, 29), serviced=dt.date(2025, 3, 31), km=3, model_code="SAGITAR"),
        factories.vehicle(owner=owner, purchase_date=dt.date(2026, 3, 31)),
        factories.vehicle(owner=owner, purchase_date=dt.date(2024, 2, 29), model_code="NO-SUCH-MODEL"),
    ]
    db.session.flush()
    for car in cars:
        statement = maintenance.with_intervals(sa.select(maintenance.due_sql_joined())).where(Vehicle.id == car.id)
        in_sql = db.session.scalar(statement)
        assert in_sql == maintenance.due_on(car, maintenance.interval_for(car.model_code)), car.model_code


def test_the_migration_seeds_a_default_interval(app_ctx):
    default = db.session.get(MaintenanceInterval, "default")
    assert (default.months, default.km) == (12, 10_000)
    assert maintenance.interval_for("NO-SUCH-MODEL").model_code == "default"


def test_maintenance_is_reminded_within_the_lead_days_once_per_due_date(app_ctx, fakes):
    owner = follower()
    car = serviced_car(owner, bought=dt.date(2024, 12, 10), serviced=dt.date(2025, 12, 10), km=9_000)
    assert planning.plan_maintenance(dt.date(2026, 11, 25)) == 0  # 15 days before
    assert planning.plan_maintenance(dt.date(2026, 11, 26)) == 1  # 14 days before
    assert planning.plan_maintenance(dt.date(2026, 11, 27)) == 0  # same car, same due date
    (row,) = reminders("maintenance_due")
    assert (row.member_id, row.period) == (owner.id, f"{car.id}:2026-12-10")
    with time_machine.travel(local(2026, 11, 26, 9, 1), tick=False):
        assert notify.send_due() == 1
    data = sent_templates(fakes)["maintenance-due-template"]
    assert (data["keyword1"]["value"], data["keyword2"]["value"]) == ("迈腾", "2026-12-10")


def test_a_sold_car_reminds_its_new_owner_not_the_old_one(app_ctx, fakes):
    seller, buyer = follower(), follower()
    car = serviced_car(seller, bought=dt.date(2024, 12, 10), serviced=dt.date(2025, 12, 10), km=9_000)
    planning.plan_maintenance(dt.date(2026, 11, 26))
    services.start_ownership(buyer, car, started_on=dt.date(2026, 11, 27))  # resale ends the seller's
    db.session.flush()
    with time_machine.travel(local(2026, 11, 27, 9, 1), tick=False):
        notify.send_due()  # the seller's planned reminder is skipped: not theirs any more
        assert planning.plan_maintenance(dt.date(2026, 11, 27)) == 1
        notify.send_due()
    rows = reminders("maintenance_due")
    assert [(r.member_id, r.status) for r in rows] == [(seller.id, "skipped"), (buyer.id, "sent")]
    assert [call["touser"] for call in fakes.official_account.templates()] == [f"o-{buyer.id}"]


def test_a_service_after_planning_skips_the_old_due_date(app_ctx, fakes):
    owner = follower()
    car = serviced_car(owner, bought=dt.date(2024, 12, 10), serviced=dt.date(2025, 12, 10), km=9_000)
    planning.plan_maintenance(dt.date(2026, 11, 26))
    services.record_service(car, dt.date(2026, 11, 26), 18_000)
    with time_machine.travel(local(2026, 11, 26, 9, 1), tick=False):
        notify.send_due()
    assert reminders("maintenance_due")[0].status == "skipped"


def test_the_dms_service_event_dates_the_next_maintenance(app_ctx, post_dms):
    factories.dealer(code="D0101")
    owner = factories.member()
    car = factories.vehicle(owner=owner)
    assert post_dms(dms_events.service(car.vin, parts_fen=1_000, labour_fen=1_000, mileage_km=7_654)).status_code == 202
    db.session.expire_all()
    assert (car.last_service_on, car.last_service_km, car.last_mileage_km) == (utcnow().date(), 7_654, 7_654)


# --- insurance ------------------------------------------------------------------------------------


def test_the_dms_insurance_event_stores_the_policy_end_and_insurer(app_ctx, post_dms):
    factories.dealer(code="D0101")
    owner = factories.member()
    car = factories.vehicle(owner=owner)
    document = dms_events.insurance(car.vin, premium_fen=300_000)
    document["payload"]["insurer"] = "中国人保"
    assert post_dms(document).status_code == 202
    db.session.expire_all()
    assert car.insurance_ends_on == dt.date.fromisoformat(document["payload"]["ends_on"])
    assert car.insurer == "中国人保"


def test_insurance_renewal_is_reminded_30_days_before_and_skipped_once_renewed(app_ctx, fakes):
    owner, renewed_meanwhile = follower(), follower()
    car = factories.vehicle(owner=owner)
    services.record_insurance(car, dt.date(2026, 12, 31), "平安")
    other = factories.vehicle(owner=renewed_meanwhile)
    services.record_insurance(other, dt.date(2026, 12, 31), None)
    factories.vehicle(owner=follower(), insurance_ends_on=dt.date(2027, 1, 1))
    db.session.flush()
    assert planning.plan_insurance_renewals(dt.date(2026, 12, 1)) == 2
    assert planning.plan_insurance_renewals(dt.date(2026, 12, 1)) == 0
    services.record_insurance(other, dt.date(2027, 12, 31), "平安")
    with time_machine.travel(local(2026, 12, 1, 9, 1), tick=False):
        notify.send_due()
    rows = sorted((r.member_id, r.period, r.status) for r in reminders("insurance_renewal"))  # set-based: any order
    assert rows == [
        (owner.id, f"{car.id}:2026-12-31", "sent"),
        (renewed_meanwhile.id, f"{other.id}:2026-12-31", "skipped"),
    ]
    assert sent_templates(fakes)["insurance-renewal-template"]["keyword2"]["value"] == "2026-12-31"


# --- bookings and ratings (published by the benefits package) ------------------------------------


def test_a_booking_is_confirmed_at_once_and_reminded_24_hours_before(app_ctx):
    member = follower()
    with time_machine.travel(local(2026, 12, 2, 10), tick=False):
        events.publish(BookingConfirmed(member.id, 7, "home_test_drive", local(2026, 12, 5, 10), utcnow()))
        events.publish(BookingConfirmed(member.id, 7, "home_test_drive", local(2026, 12, 5, 10), utcnow()))  # again
    confirmed, reminder = reminders()
    assert (confirmed.kind, confirmed.due_at) == ("booking_confirmed", local(2026, 12, 2, 10))
    assert (reminder.kind, reminder.due_at, reminder.status) == ("booking_reminder", local(2026, 12, 4, 10), "planned")


def test_a_rescheduled_booking_is_reminded_at_its_new_time_and_a_cancelled_one_not_at_all(app_ctx, fakes):
    member = follower()
    with time_machine.travel(local(2026, 12, 2, 10), tick=False):
        events.publish(BookingConfirmed(member.id, 7, "pickup", local(2026, 12, 5, 10), utcnow()))
        # a reschedule (``booking.reschedule``): booking 7 cancelled, booking 9 made at the new time
        events.publish(BookingCancelled(member.id, 7, utcnow()))
        events.publish(BookingConfirmed(member.id, 9, "pickup", local(2026, 12, 6, 15), utcnow()))
        events.publish(BookingConfirmed(member.id, 8, "pickup", local(2026, 12, 9, 15), utcnow()))
        events.publish(BookingCancelled(member.id, 8, utcnow()))
    states = sorted((r.kind, r.period, r.status, r.error) for r in reminders("booking_reminder"))
    assert states == [
        ("booking_reminder", "7:20261205T0200", "skipped", "booking cancelled"),
        ("booking_reminder", "8:20261209T0700", "skipped", "booking cancelled"),
        ("booking_reminder", "9:20261206T0700", "planned", None),
    ]
    with time_machine.travel(local(2026, 12, 5, 15, 1), tick=False):
        notify.send_due()
    data = sent_templates(fakes)["booking-reminder-template"]
    assert data["keyword2"]["value"] == "2026-12-06 15:00"


def test_a_booking_within_a_day_gets_the_confirmation_only(app_ctx):
    member = follower()
    with time_machine.travel(local(2026, 12, 2, 10), tick=False):
        events.publish(BookingConfirmed(member.id, 9, "pickup", local(2026, 12, 3, 9), utcnow()))
    assert [r.kind for r in reminders()] == ["booking_confirmed"]


def test_a_benefit_used_without_a_slot_is_confirmed_with_nothing_to_remind(app_ctx, fakes):
    member = follower()
    with time_machine.travel(local(2026, 12, 2, 10), tick=False):
        events.publish(BookingConfirmed(member.id, 10, "roadside_assistance", None, utcnow()))
        notify.send_due()
    assert [(r.kind, r.status) for r in reminders()] == [("booking_confirmed", "sent")]
    assert sent_templates(fakes)["booking-confirmed-template"]["keyword2"]["value"] == "—"


def test_a_low_rating_opens_one_callback_task_for_the_booking(app_ctx):
    member = follower()
    for _ in range(2):  # the same event again (a retry) opens no second task
        events.publish(BookingRatedLow(member.id, 41, 2, utcnow()))
    tasks = db.session.execute(sa.select(CallbackTask.reason, CallbackTask.period, CallbackTask.status)).all()
    assert tasks == [("low_rating", "41", "open")]


def test_a_rating_is_asked_after_use_and_held_over_quiet_hours(app_ctx):
    member = follower()
    with time_machine.travel(local(2026, 12, 2, 20), tick=False):
        events.publish(BenefitUsed(member.id, 31, "annual_inspection", local(2026, 12, 2, 20)))
        events.publish(BenefitUsed(member.id, 31, "annual_inspection", local(2026, 12, 2, 20)))
    (row,) = reminders("rating_request")
    assert (row.period, row.due_at) == ("31", local(2026, 12, 3, 8))  # 22:00 is quiet: 08:00


# --- lifecycle and churn --------------------------------------------------------------------------

RULES = lifecycle.RULES.default
NOW = dt.datetime(2026, 12, 2, 18, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("enrolled_days_ago", "idle_days", "vehicles", "stage"),
    [
        (10, 0, 1, "new"),
        (89, 0, 1, "new"),
        (90, 0, 1, "growing"),
        (400, 89, 1, "growing"),
        (400, 90, 1, "churn_risk"),
        (400, 364, 1, "churn_risk"),
        (400, 365, 1, "churned"),
        (731, 10, 1, "mature"),
        (200, 10, 2, "mature"),
        (30, 120, 2, "churn_risk"),
    ],
)
def test_stage_rules(enrolled_days_ago, idle_days, vehicles, stage):
    enrolled = NOW - dt.timedelta(days=enrolled_days_ago)
    last = NOW - dt.timedelta(days=idle_days)
    assert lifecycle.stage_for(NOW, enrolled, last, vehicles, RULES) == stage


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("enrolled_at", "idle", "vehicles"),
    [
        (NOW - dt.timedelta(days=days), dt.timedelta(days=idle_days), vehicles)
        for days, idle_days, vehicles in [(10, 0, 1), (89, 0, 1), (90, 0, 1), (400, 89, 1), (400, 90, 1), (30, 120, 2)]
    ]
    + [
        (NOW - dt.timedelta(days=400), dt.timedelta(days=90, seconds=-1), 1),
        (NOW - dt.timedelta(days=400), dt.timedelta(days=365, seconds=-1), 1),
        (NOW - dt.timedelta(days=400), dt.timedelta(days=365), 1),
        (NOW - dt.timedelta(days=90, seconds=-1), dt.timedelta(0), 1),
        (NOW - dt.timedelta(days=200), dt.timedelta(days=10), 2),
        # two years on the business calendar: NOW is 3 December, 02:00 in Shanghai
        (dt.datetime(2024, 12, 2, 15, 59, tzinfo=dt.UTC), dt.timedelta(days=10), 1),
        (dt.datetime(2024, 12, 2, 16, 0, tzinfo=dt.UTC), dt.timedelta(days=10), 1),
        (dt.datetime(2024, 12, 3, 15, 59, tzinfo=dt.UTC), dt.timedelta(days=10), 1),
        (dt.datetime(2024, 12, 3, 16, 0, tzinfo=dt.UTC), dt.timedelta(days=10), 1),
    ],
)
def test_the_sql_stage_rules_judge_like_stage_for(app_ctx, enrolled_at, idle, vehicles):
    """The page query judges in SQL on PostgreSQL (``stage_sql``); it must agree with ``stage_for``."""
    last = NOW - idle
    column = sa.DateTime(timezone=True)
    in_sql = db.session.scalar(
        sa.select(
            lifecycle.stage_sql(
                NOW, sa.literal(enrolled_at, column), sa.literal(last, column), sa.literal(vehicles), RULES
            )
        )
    )
    assert in_sql == lifecycle.stage_for(NOW, enrolled_at, last, vehicles, RULES)


def sign_in(member: Member, at: dt.datetime) -> None:
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.member_id == member.id))
    db.session.add(MiniappSession(identity_id=identity.id, signed_in_at=at, expires_at=at + dt.timedelta(days=1)))
    db.session.flush()


def history(member_id: int) -> list[tuple[str | None, str]]:
    rows = db.session.scalars(
        sa.select(MemberLifecycleHistory)
        .where(MemberLifecycleHistory.member_id == member_id)
        .order_by(MemberLifecycleHistory.id)
    )
    return [(row.from_stage, row.to_stage) for row in rows]


def test_only_changes_write_history_and_churn_risk_opens_one_task_and_one_win_back(app_ctx, fakes):
    long_ago = NOW - dt.timedelta(days=500)
    drifting = follower(enrolled_at=long_ago)
    sign_in(drifting, NOW - dt.timedelta(days=310))
    newcomer = follower(enrolled_at=NOW - dt.timedelta(days=5))

    first = lifecycle.judge(NOW - dt.timedelta(days=300))  # 200 days after joining, active: growing
    assert (first.judged, first.changed, first.entered_churn_risk) == (1, 1, 0)  # the newcomer did not exist yet
    assert lifecycle.judge(NOW - dt.timedelta(days=300)).changed == 0
    run = lifecycle.judge(NOW)
    assert run.entered_churn_risk == 1 and run.by_stage == {"churn_risk": 1, "new": 1}
    assert lifecycle.judge(NOW).changed == 0  # rerun: nothing new
    assert history(drifting.id) == [(None, "growing"), ("growing", "churn_risk")]
    assert history(newcomer.id) == [(None, "new")]
    db.session.expire_all()
    assert drifting.lifecycle_stage == "churn_risk"
    assert db.session.get(MemberLifecycle, drifting.id).stage == "churn_risk"
    (task,) = db.session.scalars(sa.select(CallbackTask))
    assert (task.member_id, task.reason, task.status, task.period) == (drifting.id, "churn_risk", "open", "2026-12-03")
    (win_back,) = reminders("win_back")
    assert (win_back.member_id, win_back.due_at) == (drifting.id, local(2026, 12, 3, 9))

    # The member signs in to the mini-app: growing again, and the win-back is moot.
    sign_in(drifting, NOW)
    lifecycle.judge(NOW + dt.timedelta(hours=1))
    assert history(drifting.id)[-1] == ("churn_risk", "growing")
    with time_machine.travel(local(2026, 12, 3, 9, 1), tick=False):
        notify.send_due()
    assert reminders("win_back")[0].status == "skipped"


def test_points_activity_counts_as_an_interaction(app_ctx):
    member = follower(enrolled_at=NOW - dt.timedelta(days=500))
    with time_machine.travel(NOW - dt.timedelta(days=10), tick=False):
        ledger.earn(
            ledger.Earning(member_id=member.id, currency="reward", points=10, idempotency_key="k", source_type="test")
        )
    lifecycle.judge(NOW)
    assert history(member.id) == [(None, "growing")]


def test_a_churned_member_gets_no_win_back(app_ctx):
    member = follower(enrolled_at=NOW - dt.timedelta(days=800))
    assert lifecycle.judge(NOW).entered_churn_risk == 0
    assert history(member.id) == [(None, "churned")]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CallbackTask)) == 0


def test_a_buyer_who_never_activated_is_staged_but_gets_no_win_back(app_ctx):
    buyer = factories.member(status="pre_enrolled", enrolled_at=NOW - dt.timedelta(days=120))
    run = lifecycle.judge(NOW)
    assert (run.by_stage, run.entered_churn_risk) == ({"churn_risk": 1}, 0)
    assert history(buyer.id) == [(None, "churn_risk")]
    assert reminders("win_back") == [] and db.session.scalar(sa.select(sa.func.count(CallbackTask.id))) == 0


def test_a_dry_run_counts_stages_and_writes_nothing(app_ctx):
    follower(enrolled_at=NOW - dt.timedelta(days=200))
    run = lifecycle.judge(NOW, dry_run=True)
    assert (run.changed, run.entered_churn_risk) == (1, 1)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberLifecycle)) == 0
    assert reminders() == []


def test_every_member_is_counted_once_by_stage_whatever_the_page_size(app_ctx):
    # PostgreSQL counts the unchanged members per stage in SQL and pages on the counts' last id
    for days_ago, idle in ((5, 1), (200, 10), (200, 120), (500, 400), (900, 20), (40, 39), (300, 95)):
        member = follower(enrolled_at=NOW - dt.timedelta(days=days_ago))
        sign_in(member, NOW - dt.timedelta(days=idle))
    lifecycle.judge(NOW - dt.timedelta(days=100), page=2)  # some stages on record, some to change
    whole = lifecycle.judge(NOW, dry_run=True)
    assert whole.judged == 7 and sum(whole.by_stage.values()) == 7
    for page in (1, 2, 3):
        paged = lifecycle.judge(NOW, dry_run=True, page=page)
        assert (paged.judged, paged.by_stage, paged.changed, paged.entered_churn_risk) == (
            whole.judged,
            whole.by_stage,
            whole.changed,
            whole.entered_churn_risk,
        )


def test_the_lifecycle_history_is_append_only(app_ctx):
    follower(enrolled_at=NOW - dt.timedelta(days=10))  # joined before the judged moment, whatever today is
    lifecycle.judge(NOW)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.session.begin_nested():
        db.session.execute(sa.text("UPDATE member_lifecycle_history SET to_stage = 'mature'"))


# --- the command and the nightly job --------------------------------------------------------------


def test_the_cli_plans_every_kind_and_a_dry_run_counts_each_without_writing(app, app_ctx):
    follower(birthday=dt.date(1990, 12, 3))
    owner = follower()
    services.record_insurance(factories.vehicle(owner=owner), dt.date(2027, 1, 2), None)
    db.session.flush()
    result = CliRunner().invoke(care_cli, ["plan", "--date", "2026-12-03", "--dry-run"], obj=app.cli)
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}  # the progress bar is on stderr
    assert set(lines) == set(planning.PLANNERS)
    assert lines["birthday"].split()[3] == "1" and lines["insurance_renewal"].split()[3] == "1"
    assert lines["maintenance_due"].split()[3] == "0"
    assert reminders() == []


def test_the_nightly_job_plans_every_kind(app_ctx):
    born_today = follower(birthday=dt.date(1990, 12, 3))
    idle = follower(enrolled_at=NOW - dt.timedelta(days=200))
    with time_machine.travel(local(2026, 12, 3, 3, 0), tick=False):
        counts = planning.plan_todays_reminders()
    assert set(counts) == set(planning.PLANNERS)
    assert (counts["birthday"], counts["win_back"]) == (1, 1)
    assert {(r.kind, r.member_id) for r in reminders()} == {("birthday", born_today.id), ("win_back", idle.id)}


# --- concurrency (PostgreSQL) ---------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.committed
def test_two_birthday_planners_at_once_make_one_row_per_member(app):
    with app.app_context():
        members = [follower(birthday=dt.date(1980 + i % 30, 12, 3)).id for i in range(20)]
        db.session.commit()

    def plan(_: int) -> int:
        with app.app_context():
            planned = planning.plan_birthdays(dt.date(2026, 12, 3))
            db.session.commit()
            return planned

    results = run_concurrently(4, plan)
    assert sum(results) == len(members), results
    with app.app_context():
        assert sorted(r.member_id for r in reminders("birthday")) == sorted(members)


@pytest.mark.postgres
@pytest.mark.committed
def test_two_lifecycle_passes_at_once_write_each_change_and_task_once(app):
    with app.app_context():
        idle = [follower(enrolled_at=NOW - dt.timedelta(days=200)).id for _ in range(15)]
        fresh = [follower(enrolled_at=NOW - dt.timedelta(days=3)).id for _ in range(15)]
        db.session.commit()

    def judge(_: int) -> int:
        with app.app_context():
            run = lifecycle.judge(NOW, page=7)
            db.session.commit()
            return run.changed

    results = run_concurrently(3, judge)
    assert sum(results) == len(idle) + len(fresh), results
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberLifecycleHistory)) == 30
        tasks = db.session.scalars(sa.select(CallbackTask.member_id)).all()
        assert sorted(tasks) == sorted(idle)
        assert sorted(r.member_id for r in reminders("win_back")) == sorted(idle)


def test_the_migration_backfills_the_month_day_from_the_encrypted_birthdays(app_ctx):
    spec = importlib.util.spec_from_file_location("e3", MIGRATIONS / "20261202_e3_care_planning_lifecycle.py")
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    leapling, unknown = factories.member(birthday=dt.date(1996, 2, 29)), factories.member()
    db.session.execute(sa.text("UPDATE members SET birth_month_day = NULL"))  # as before the migration
    with Operations.context(MigrationContext.configure(db.session.connection())):
        migration._backfill_birth_month_day(cipher())
    rows = dict(db.session.execute(sa.text("SELECT id, birth_month_day FROM members")).all())
    assert (rows[leapling.id], rows[unknown.id]) == (229, None)


def test_reminders_are_rendered_in_the_members_language(app_ctx, fakes):
    owner = follower(locale="en")
    car = factories.vehicle(owner=owner)
    services.record_insurance(car, dt.date(2026, 12, 31), None)
    planning.plan_insurance_renewals(dt.date(2026, 12, 1))
    with time_machine.travel(local(2026, 12, 1, 9, 1), tick=False):
        notify.send_due()
    data = sent_templates(fakes)["insurance-renewal-template"]
    assert data["first"]["value"] == "Your car insurance ends soon."


@pytest.mark.postgres
@pytest.mark.committed
def test_two_maintenance_planners_at_once_make_one_row_per_car(app):
    with app.app_context():
        cars = []
        for _ in range(12):
            owner = follower()
            cars.append(serviced_car(owner, bought=dt.date(2024, 12, 10), serviced=dt.date(2025, 12, 10), km=9_000).id)
        db.session.commit()

    def plan(_: int) -> int:
        with app.app_context():
            planned = planning.plan_maintenance(dt.date(2026, 11, 30))
            db.session.commit()
            return planned

    results = run_concurrently(3, plan)
    assert sum(results) == len(cars), results
    with app.app_context():
        assert sorted(r.period for r in reminders("maintenance_due")) == sorted(f"{car}:2026-12-10" for car in cars)
