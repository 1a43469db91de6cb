"""The dashboard's daily rollups on PostgreSQL against hand-computed figures (business days in
Asia/Shanghai), idempotent re-rolls and late events, the charts read from the rollups, a dealer
manager's scope, and the page and its audited CSV exports."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa

from app.campaigns.models import Campaign, RedPacketGrant
from app.care.models import Notification
from app.complaints import services as complaints
from app.core.clock import BUSINESS_TZ
from app.core.db import db
from app.core.models import AuditEntry
from app.dealers.models import EnrollmentTarget
from app.points import ledger
from app.points.ledger import Earning
from app.referrals.models import Referral
from app.reporting import dashboard, rollup
from app.reporting.dashboard import Period, Scope
from app.reporting.models import DailyMetric
from app.tiers import policy
from tests import factories
from tests.console_helpers import sign_in

pytestmark = pytest.mark.postgres

DAY = dt.date(2026, 11, 10)
NEXT = DAY + dt.timedelta(days=1)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """A Beijing wall-clock time as aware UTC (the rows store UTC)."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BUSINESS_TZ).astimezone(dt.UTC)


def rows(metric: str | None = None) -> dict[tuple, int]:
    query = sa.select(DailyMetric)
    if metric:
        query = query.where(DailyMetric.metric == metric)
    return {(r.metric, r.day, r.dealer_id, r.key): r.value for r in db.session.scalars(query)}


def values(metric: str) -> dict[tuple, int]:
    """A metric's rows per dealer (without the rows summed over the dealers)."""
    return {(day, dealer, key): value for (_m, day, dealer, key), value in rows(metric).items() if dealer != -1}


def totals(metric: str) -> dict[tuple, int]:
    return {(day, key): value for (_m, day, dealer, key), value in rows(metric).items() if dealer == -1}


@pytest.fixture
def two_dealers():
    ours, theirs = factories.dealer(), factories.dealer()
    return ours, theirs, factories.staff(ours), factories.staff(theirs)


def test_new_members_per_business_day_dealer_and_advisor(app_ctx, two_dealers):
    ours, theirs, advisor, _other = two_dealers
    factories.member(enrolling_dealer_id=ours.id, enrolling_staff_id=advisor.id, enrolled_at=at(DAY, 9))
    factories.member(enrolling_dealer_id=ours.id, enrolling_staff_id=advisor.id, enrolled_at=at(DAY, 23, 30))
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(NEXT, 0, 30))  # 16:30 UTC on DAY: Beijing's next day
    factories.member(enrolling_dealer_id=theirs.id, enrolled_at=at(DAY, 12))
    factories.member(status="merged", enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 12))  # a duplicate: not new
    factories.member(enrolled_at=at(DAY, 13))  # no dealer (mini-app sign-up)

    rollup.roll(DAY, NEXT)

    assert values("new_members") == {
        (DAY, ours.id, ""): 2,
        (NEXT, ours.id, ""): 1,
        (DAY, theirs.id, ""): 1,
        (DAY, 0, ""): 1,
    }
    assert values("new_members_advisor") == {(DAY, ours.id, str(advisor.id)): 2}
    assert values("members_total") == {
        (DAY, ours.id, ""): 2,
        (NEXT, ours.id, ""): 3,
        (DAY, theirs.id, ""): 1,
        (NEXT, theirs.id, ""): 1,
        (DAY, 0, ""): 1,
        (NEXT, 0, ""): 1,
    }
    # HQ reads the sums over the dealers: one row per day and key
    assert totals("new_members") == {(DAY, ""): 4, (NEXT, ""): 1}
    assert totals("members_total") == {(DAY, ""): 4, (NEXT, ""): 5}


def test_targets_prorate_by_day_and_the_dealer_manager_sees_only_his_dealer(app_ctx, two_dealers):
    ours, theirs, advisor, _other = two_dealers
    for _ in range(3):
        factories.member(enrolling_dealer_id=ours.id, enrolling_staff_id=advisor.id, enrolled_at=at(DAY, 10))
    factories.member(enrolling_dealer_id=theirs.id, enrolled_at=at(DAY, 10))
    month = DAY.replace(day=1)
    db.session.add_all(
        [
            EnrollmentTarget(month=month, dealer_id=ours.id, staff_id=None, target=60),  # 2 a day in November
            EnrollmentTarget(month=month, dealer_id=ours.id, staff_id=advisor.id, target=30),
            EnrollmentTarget(month=month, dealer_id=theirs.id, staff_id=None, target=90),
        ]
    )
    db.session.flush()
    rollup.roll(DAY, NEXT)
    when = Period(DAY, NEXT)

    everyone = dashboard.new_members(when, Scope())
    assert everyone.rows == [[DAY.isoformat(), 4, 5.0], [NEXT.isoformat(), 0, 5.0]]
    by_dealer = dashboard.new_members_by_dealer(when, Scope())
    assert [row[1:] for row in by_dealer.rows] == [[3, 4.0], [1, 6.0]]  # 60 × 2/30 and 90 × 2/30
    by_advisor = dashboard.new_members_by_advisor(when, Scope(dealer_id=ours.id))
    assert by_advisor.rows == [[f"{advisor.staff_code} {advisor.name}", 3, 2.0]]

    mine = dashboard.new_members(when, Scope(dealer_id=ours.id))
    assert mine.rows == [[DAY.isoformat(), 3, 2.0], [NEXT.isoformat(), 0, 2.0]]
    assert [row[1] for row in dashboard.new_members_by_dealer(when, Scope(dealer_id=ours.id)).rows] == [3]


def test_activation_rate_counts_the_pre_enrolled_buyers_cohort(app_ctx, two_dealers):
    ours, *_ = two_dealers
    buyers = [
        factories.member(status="pre_enrolled", enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 10)) for _ in range(4)
    ]
    factories.member(status="active", enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 11))  # activated at once
    factories.member(status="active", channel="miniapp", enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 11))
    buyers[0].activated_at, buyers[0].status = at(NEXT, 9), "active"  # a week later is the same cohort
    db.session.flush()

    rollup.roll(DAY, DAY)

    assert values("preenrolled") == {(DAY, ours.id, ""): 5}
    assert values("preenrolled_activated") == {(DAY, ours.id, ""): 2}
    chart = dashboard.activation(Period(DAY, DAY), Scope())
    assert chart.rows == [[DAY.isoformat(), 5, 2, 40.0]]


def test_tier_mix_at_the_end_of_each_day_from_the_tier_history(app_ctx, two_dealers):
    ours, *_ = two_dealers
    members = [
        factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY - dt.timedelta(days=5), 10)) for _ in range(3)
    ]
    state = policy.get_state(members[0].id)
    policy.change_tier(state, "gold", "upgrade", 20_000, at(DAY, 15))
    policy.change_tier(state, "platinum", "upgrade", 60_000, at(NEXT, 15))
    other = policy.get_state(members[1].id)
    policy.change_tier(other, "gold", "upgrade", 20_000, at(DAY - dt.timedelta(days=1), 8))
    db.session.flush()

    rollup.roll(DAY - dt.timedelta(days=1), NEXT)

    assert values("tier_mix") == {
        (DAY - dt.timedelta(days=1), ours.id, "gold"): 1,
        (DAY - dt.timedelta(days=1), ours.id, "silver"): 2,
        (DAY, ours.id, "gold"): 2,
        (DAY, ours.id, "silver"): 1,
        (NEXT, ours.id, "gold"): 1,
        (NEXT, ours.id, "platinum"): 1,
        (NEXT, ours.id, "silver"): 1,
    }
    chart = dashboard.tier_mix(Period(DAY, NEXT), Scope())
    assert chart.rows == [["silver", 1], ["gold", 1], ["platinum", 1]]  # at the end of the range


def _earn(member_id: int, points: int, key: str, when: dt.datetime) -> None:
    ledger.earn(
        Earning(member_id=member_id, currency="reward", points=points, idempotency_key=key, source_type="test"),
        at=when,
    )


def test_points_issued_redeemed_expired_liability_and_the_expiry_ratio(app_ctx, two_dealers):
    ours, *_ = two_dealers
    member = factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY - dt.timedelta(days=40), 10))
    before = at(DAY - dt.timedelta(days=35), 10)
    _earn(member.id, 500, "before", before)  # outside the window: in the opening balance
    _earn(member.id, 1_000, "day", at(DAY, 10))
    ledger.spend(member.id, 300, idempotency_key="spend", source_type="redemption", at=at(NEXT, 11))
    tier_only = Earning(member_id=member.id, currency="tier", points=999, idempotency_key="tier", source_type="test")
    ledger.earn(tier_only, at=at(DAY, 10))  # tier points are no liability

    rollup.roll(DAY, NEXT)

    assert values("points") == {(DAY, ours.id, "earn+"): 1_000, (NEXT, ours.id, "spend-"): -300}
    assert values("points_balance") == {(DAY, ours.id, ""): 1_500, (NEXT, ours.id, ""): 1_200}
    when = Period(DAY, NEXT)
    assert dashboard.points(when, Scope()).rows == [[DAY.isoformat(), 1_000, 0, 0], [NEXT.isoformat(), 0, 300, 0]]
    # 5 points = ¥1 (``points.point_value_fen`` 20)
    assert dashboard.liability(when, Scope()).rows == [
        [DAY.isoformat(), 1_500, 300.0],
        [NEXT.isoformat(), 1_200, 240.0],
    ]
    assert dashboard.liability(when, Scope(dealer_id=ours.id + 999)).rows[0][1:] == [0, 0.0]

    db.session.add(
        ledger_entry := _expiry_entry(member.id, -200, at(NEXT, 0, 5))  # what the nightly expiry writes
    )
    db.session.flush()
    rollup.roll(NEXT, NEXT)
    assert values("points")[(NEXT, ours.id, "expire-")] == -200
    assert ledger_entry.id
    assert dashboard.expiry_ratio(when, Scope()).rows == [["2026-11", 1_000, 200, 20.0]]


def _expiry_entry(member_id: int, points: int, when: dt.datetime):
    from app.points.models import PointEntry

    return PointEntry(
        member_id=member_id,
        currency="reward",
        kind="expire",
        points=points,
        idempotency_key=f"expire:{member_id}:{when:%Y%m%d}",
        source_type="expiry",
        occurred_at=when,
    )


def test_monthly_active_counts_point_movements_of_the_last_30_days(app_ctx, two_dealers):
    ours, *_ = two_dealers
    old = at(DAY - dt.timedelta(days=60), 10)
    active = factories.member(enrolling_dealer_id=ours.id, enrolled_at=old)
    lapsed = factories.member(enrolling_dealer_id=ours.id, enrolled_at=old)
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=old)
    _earn(active.id, 100, "a", at(DAY - dt.timedelta(days=29), 10))  # day 30 of the window ending DAY
    _earn(lapsed.id, 100, "b", at(DAY - dt.timedelta(days=30), 10))  # just outside it

    rollup.roll(DAY, NEXT)

    assert values("active_30d") == {(DAY, ours.id, ""): 1}
    chart = dashboard.monthly_active(Period(DAY, NEXT), Scope())
    assert chart.rows == [[DAY.isoformat(), 1, 3, 33.3], [NEXT.isoformat(), 0, 3, 0.0]]


def test_red_packets_referrals_notifications_and_complaints(app_ctx, two_dealers):
    ours, theirs, *_ = two_dealers
    member = factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 8))
    campaign = Campaign(
        code="DEMO1",
        name="双十一红包",
        status="active",
        budget_fen=100_000,
        amount_fen=888,
        starts_at=at(DAY, 0),
        ends_at=at(DAY + dt.timedelta(days=30), 0),
        channels=["official"],
        send_name="一汽大众",
        wishing="w",
        act_name="a",
        remark="r",
        dealer_id=theirs.id,
    )
    db.session.add(campaign)
    db.session.flush()
    for n, status in enumerate(("sent", "received", "failed", "refunded")):
        receiver = factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 8))  # once per member
        db.session.add(
            RedPacketGrant(
                campaign_id=campaign.id,
                member_id=receiver.id,
                openid=f"o{n}",
                amount_fen=888,
                status=status,
                business_date=DAY,
                sent_at=at(DAY, 10 + n),
            )
        )
    reached = {"test_drive_at": at(DAY, 15), "ordered_at": at(NEXT, 10), "delivered_at": at(NEXT, 11)}
    stages = (
        (),
        ("test_drive_at",),
        ("test_drive_at", "ordered_at"),
        tuple(reached),
        tuple(reached),
        ("test_drive_at",),
    )
    for n, fields in enumerate(stages):
        db.session.add(
            Referral(
                referrer_member_id=member.id,
                referee_member_id=factories.member(enrolling_dealer_id=ours.id).id,
                code="C1",
                dealer_id=ours.id,
                milestone="cancelled" if n == 5 else "lead",
                attributed_at=at(DAY, 12),
                expires_at=at(DAY + dt.timedelta(days=90), 12),
                **{name: reached[name] for name in fields},
            )
        )
    sends = (
        ("tier_upgrade", "sent"),
        ("tier_upgrade", "delivered"),
        ("tier_upgrade", "failed"),
        ("points_expiring", "planned"),
    )
    for n, (kind, status) in enumerate(sends):
        db.session.add(
            Notification(
                member_id=member.id,
                kind=kind,
                channel="official_template",
                dedupe_key=f"n{n}",
                status=status,
                payload={},
                created_at=at(DAY, 9),
            )
        )
    for category in ("points_missing", "points_missing", "tier"):
        complaints.log_complaint(
            member.id, category=category, description="d", status="open", resolution=None, actor="t"
        )
    db.session.flush()
    db.session.execute(sa.update(complaints.Complaint).values(created_at=at(DAY, 14)))

    rollup.roll(DAY, DAY)
    when = Period(DAY, DAY)

    assert values("red_packet_fen") == {(DAY, theirs.id, str(campaign.id)): 1_776}
    assert dashboard.red_packets(when, Scope()).rows == [["双十一红包", 17.76, 1000.0]]
    assert dashboard.red_packets(when, Scope(dealer_id=ours.id)).rows == []
    assert dashboard.referral_funnel(when, Scope()).rows == [
        ["lead", 6],
        ["test_drive", 5],
        ["order", 3],
        ["delivery", 2],
    ]
    assert dashboard.referral_funnel(when, Scope(dealer_id=theirs.id)).rows[0] == ["lead", 0]
    assert dashboard.notifications(when, Scope()).rows == [
        [("tier_upgrade", "official_template"), 1, 1, 1, 0, 0],
        [("points_expiring", "official_template"), 0, 0, 0, 0, 1],
    ]
    assert dashboard.complaints(when, Scope()).rows == [["points_missing", 2], ["tier", 1]]
    assert dashboard.complaints(when, Scope(dealer_id=theirs.id)).rows == []


def test_rolling_twice_gives_the_same_rows_and_a_late_event_re_rolls_the_day(app_ctx, two_dealers):
    ours, *_ = two_dealers
    early = factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 10))
    _earn(early.id, 100, "x", at(DAY, 11))
    rollup.roll(DAY, NEXT)
    first = rows()
    rollup.roll(DAY, NEXT)
    assert rows() == first and first

    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 20))  # arrives today, happened yesterday
    early.status = "merged"  # and the early one turns out to be a duplicate
    db.session.flush()
    rollup.roll(DAY, NEXT)
    assert values("new_members") == {(DAY, ours.id, ""): 1}
    assert values("members_total")[(NEXT, ours.id, "")] == 1


def test_a_window_holding_a_first_of_the_month_rolls_twice_like_the_nightly_re_roll(app_ctx, two_dealers):
    # The month rows are dated the 1st: a second roll over them summed last run's month rows again
    # into HQ's totals (a duplicate key: every nightly re-roll after the first failed).
    ours, *_ = two_dealers
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(dt.date(2026, 11, 30), 10))
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(dt.date(2026, 12, 1), 10))
    first, last = dt.date(2026, 10, 28), dt.date(2026, 12, 1)
    rollup.roll(first, last)
    once = rows()
    rollup.roll(first, last)
    assert rows() == once
    assert totals("new_members@month") == {(dt.date(2026, 11, 1), ""): 1, (dt.date(2026, 12, 1), ""): 1}


def test_a_long_range_reads_whole_months_from_the_month_rows_and_the_ends_from_the_days(app_ctx, two_dealers):
    ours, _theirs, advisor, _ = two_dealers
    for day in (
        dt.date(2026, 10, 9),
        dt.date(2026, 10, 15),
        dt.date(2026, 11, 10),
        dt.date(2026, 11, 30),
        dt.date(2026, 12, 20),
    ):
        factories.member(enrolling_dealer_id=ours.id, enrolling_staff_id=advisor.id, enrolled_at=at(day, 10))
    rollup.roll(dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert values("new_members@month") == {
        (dt.date(2026, 10, 1), ours.id, ""): 2,
        (dt.date(2026, 11, 1), ours.id, ""): 2,
        (dt.date(2026, 12, 1), ours.id, ""): 1,
    }
    # 10 Oct – 11 Dec: 15 Oct from October's days, November from its month row, nothing in December yet
    when = Period(dt.date(2026, 10, 10), dt.date(2026, 12, 11))
    assert dashboard.new_members_by_dealer(when, Scope()).rows[0][1] == 3
    assert dashboard.new_members_by_advisor(when, Scope(dealer_id=ours.id)).rows[0][1] == 3
    assert sum(row[1] for row in dashboard.new_members(when, Scope()).rows) == 3
    whole = Period(dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert dashboard.new_members_by_advisor(whole, Scope()).rows[0][1] == 5
    # a re-roll of one day recomputes its month from the days
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(dt.date(2026, 11, 20), 10))
    rollup.roll(dt.date(2026, 11, 20), dt.date(2026, 11, 20))
    assert values("new_members@month")[(dt.date(2026, 11, 1), ours.id, "")] == 3
    assert totals("new_members@month")[(dt.date(2026, 11, 1), "")] == 3


def test_the_window_outside_is_left_alone_and_bad_windows_are_refused(app_ctx, two_dealers):
    ours, *_ = two_dealers
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 10))
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(NEXT, 10))
    rollup.roll(DAY, NEXT)
    db.session.execute(sa.delete(DailyMetric).where(DailyMetric.day == DAY))
    rollup.roll(NEXT, NEXT)
    assert {day for day, _d, _k in values("new_members")} == {NEXT}
    with pytest.raises(rollup.ValidationFailed):
        rollup.roll(NEXT, DAY)


def test_the_periodic_jobs_are_declared(app):
    from app.jobs.schedule import entries

    jobs = {entry.job: entry.cron for entry in entries()}
    assert jobs["app.reporting.rollup.roll_recent"] == "15 * * * *"
    assert jobs["app.reporting.rollup.reroll_window"] == "45 3 * * *"


def test_the_cli_backfills_a_month_at_a_time(app, app_ctx, two_dealers):
    ours, *_ = two_dealers
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 10))
    db.session.flush()
    result = app.test_cli_runner().invoke(args=["dashboard", "rollup", "--from", "2026-10-01", "--to", "2026-11-15"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"2026-10-01 … 2026-10-31: {_rows_between(dt.date(2026, 10, 1), dt.date(2026, 10, 31))} rows",
        f"2026-11-01 … 2026-11-15: {_rows_between(dt.date(2026, 11, 1), dt.date(2026, 11, 15))} rows",
    ]
    assert values("new_members") == {(DAY, ours.id, ""): 1}
    refused = app.test_cli_runner().invoke(args=["dashboard", "rollup", "--from", "2026-11-15", "--to", "2026-11-01"])
    assert refused.exit_code == 2 and "--to is before --from" in refused.output
    week = app.test_cli_runner().invoke(args=["dashboard", "rollup", "--to", "2026-11-15", "--days", "7"])
    assert week.output.splitlines() == [
        f"2026-11-09 … 2026-11-15: {_rows_between(dt.date(2026, 11, 9), dt.date(2026, 11, 15))} rows"
    ]
    both = app.test_cli_runner().invoke(args=["dashboard", "rollup", "--from", "2026-11-01", "--days", "7"])
    assert both.exit_code == 2 and "not both" in both.output


def _rows_between(first: dt.date, last: dt.date) -> int:
    return len([key for key in rows() if first <= key[1] <= last and not key[0].endswith("@month")])


# --- the page and the CSV ----------------------------------------------------------------------


def test_the_page_shows_every_chart_and_refuses_a_bad_range(client, app_ctx, two_dealers):
    operator, _ = factories.operator("operator")
    sign_in(client, operator.username)
    page = client.get(f"/console/dashboard?from={DAY}&to={NEXT}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for name in dashboard.CHARTS:
        assert f'data-testid="chart-{name}"' in text and f"/console/dashboard/{name}.csv" in text
    bad = client.get("/console/dashboard?from=2026-13-01&to=2026-11-01")
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.get_data(as_text=True)
    backwards = client.get(f"/console/dashboard?from={NEXT}&to={DAY}")
    assert backwards.status_code == 422
    assert client.get("/console/dashboard?from=2025-01-01&to=2026-11-01").status_code == 422
    assert client.get("/console/dashboard?from=0001-01-01&to=0001-01-02").status_code == 422  # was a 500
    assert client.get("/console/dashboard/nonsense.csv").status_code == 404


def test_an_agent_has_no_dashboard(client, app_ctx):
    agent, _ = factories.operator("agent")
    sign_in(client, agent.username)
    assert client.get("/console/dashboard").status_code == 403
    assert client.get("/console/dashboard/new_members.csv").status_code == 403


def test_the_csv_has_the_charts_numbers_scoped_and_is_audited(client, app_ctx, two_dealers):
    ours, theirs, *_ = two_dealers
    factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, 10))
    factories.member(enrolling_dealer_id=theirs.id, enrolled_at=at(DAY, 10))
    for category, member_dealer in (("tier", ours), ("privacy", theirs)):
        member = factories.member(enrolling_dealer_id=member_dealer.id, enrolled_at=at(DAY, 10))
        complaints.log_complaint(
            member.id, category=category, description="d", status="open", resolution=None, actor="t"
        )
    db.session.execute(sa.update(complaints.Complaint).values(created_at=at(DAY, 14)))
    rollup.roll(DAY, NEXT)
    manager, _ = factories.operator("dealer_manager", dealer_id=ours.id)
    sign_in(client, manager.username)

    response = client.get(f"/console/dashboard/new_members.csv?from={DAY}&to={NEXT}&lang=en")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="new_members-20261110-20261111.csv"' in response.headers["Content-Disposition"]
    lines = response.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines == ["Day,New members,Daily target", "2026-11-10,2,0.0", "2026-11-11,0,0.0"]

    report = client.get(f"/console/dashboard/complaints.csv?from={DAY}&to={NEXT}&lang=en")
    assert report.get_data(as_text=True).lstrip("\ufeff").splitlines() == ["Category,Complaints", "Tier,1"]
    zh = client.get(f"/console/dashboard/complaints.csv?from={DAY}&to={NEXT}&lang=zh_CN").get_data(as_text=True)
    assert zh.lstrip("\ufeff").splitlines()[0] == "类别,投诉"

    exported = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "dashboard.exported")).all()
    assert [(row.actor_id, row.subject_id, row.details["dealer_id"]) for row in exported] == [
        (manager.actor, "new_members", ours.id),
        (manager.actor, "complaints", ours.id),
        (manager.actor, "complaints", ours.id),
    ]


def test_the_notification_chart_and_its_csv_name_kinds_and_channels_in_the_operators_language(client, app_ctx):
    member = factories.member(enrolled_at=at(DAY, 8))
    sends = (
        ("birthday", "sms", "delivered"),
        ("tier_upgrade", "official_template", "sent"),
        ("a_new_kind", "official_template", "failed"),
    )
    for n, (kind, channel, status) in enumerate(sends):
        db.session.add(
            Notification(
                member_id=member.id,
                kind=kind,
                channel=channel,
                dedupe_key=f"n{n}",
                status=status,
                payload={},
                created_at=at(DAY, 9),
            )
        )
    db.session.flush()
    rollup.roll(DAY, DAY)
    operator, _ = factories.operator("operator")
    sign_in(client, operator.username)

    def csv_lines(lang: str) -> list[str]:
        response = client.get(f"/console/dashboard/notifications.csv?from={DAY}&to={DAY}&lang={lang}")
        assert response.status_code == 200
        return sorted(response.get_data(as_text=True).lstrip("\ufeff").splitlines()[1:])

    assert csv_lines("en") == [
        "Birthday · SMS,0,1,0,0,0",
        "Tier upgrade · Service-account template message,1,0,0,0,0",
        "a_new_kind · Service-account template message,0,0,1,0,0",  # a code the console does not know yet
    ]
    assert csv_lines("zh_CN") == [
        "a_new_kind · 服务号模板消息,0,0,1,0,0",
        "生日 · 短信,0,1,0,0,0",
        "等级升级 · 服务号模板消息,1,0,0,0,0",
    ]
    page = client.get(f"/console/dashboard?from={DAY}&to={DAY}&lang=zh_CN").get_data(as_text=True)
    drawn = re.search(r'<script type="application/json" id="data-notifications">(.*?)</script>', page, re.S)
    assert drawn, "the notification chart's figures are not on the page"
    assert sorted(row[0] for row in json.loads(drawn.group(1))["rows"]) == [
        "a_new_kind · 服务号模板消息",
        "生日 · 短信",
        "等级升级 · 服务号模板消息",
    ]


def test_every_notification_kind_and_channel_has_a_label():
    from app.care import channels, rendering
    from app.console import labels

    assert set(labels.NOTIFICATION_KINDS) == {*rendering.RENDERERS, *channels.TEMPLATE_KINDS, "chat_reply"}
    assert set(labels.NOTIFICATION_CHANNELS) == {*channels.ALL, channels.OFFICIAL_CUSTOM}


def test_a_dealer_manager_without_a_dealer_sees_nothing(app_ctx):
    from app.operators.models import Operator

    assert dashboard.scope_for(Operator(role="dealer_manager", dealer_id=None)) == Scope(dealer_id=-2)
    hq, _ = factories.operator("supervisor")
    assert dashboard.scope_for(hq) == Scope()


def test_a_text_cell_that_looks_like_a_formula_is_quoted(app_ctx):
    from app.console.dashboard import _cell

    assert [_cell(v) for v in ("=HYPERLINK(1)", "+1", "-1", "@x", "正常", -5, 1.5)] == [
        "'=HYPERLINK(1)",
        "'+1",
        "'-1",
        "'@x",
        "正常",
        -5,
        1.5,
    ]


@pytest.mark.committed
def test_two_rollups_of_the_same_days_at_once_leave_one_set_of_rows(app, app_ctx, two_dealers):
    from tests.conftest import run_concurrently

    ours, *_ = two_dealers
    for hour in (9, 10, 11):
        factories.member(enrolling_dealer_id=ours.id, enrolled_at=at(DAY, hour))
    db.session.commit()

    def run(_i: int) -> int:
        with app.app_context():
            try:
                return rollup.roll(DAY, NEXT).rows
            finally:
                db.session.commit()
                db.remove()

    results = run_concurrently(4, run)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert values("new_members") == {(DAY, ours.id, ""): 3}
    assert len(set(results)) == 1


def test_benefit_use_and_ratings_per_benefit(app_ctx, two_dealers):
    from app.benefits import catalog
    from app.benefits.models import Booking

    ours, theirs, *_ = two_dealers
    catalog.seed_defaults(actor="test")
    benefit = catalog.in_force().benefits[0]
    member = factories.member(enrolling_dealer_id=ours.id)
    cases = (
        ("delivered", ours, 5, at(DAY, 10)),
        ("delivered", ours, 3, at(DAY, 11)),
        ("delivered", theirs, None, at(DAY, 12)),
        ("cancelled", ours, None, None),
        ("delivered", ours, 4, at(NEXT, 9)),  # used the next day: outside a one-day range
    )
    for n, (status, dealer, rating, delivered_at) in enumerate(cases):
        db.session.add(
            Booking(
                member_id=member.id,
                request_id=f"r{n}",
                benefit_id=benefit.id,
                benefit_code=benefit.code,
                dealer_id=dealer.id,
                status=status,
                paid_with="quota",
                year_start=dt.date(2026, 1, 1),
                delivered_at=delivered_at,
                rating=rating,
                rated_at=delivered_at + dt.timedelta(hours=1) if rating else None,
            )
        )
    db.session.flush()
    rollup.roll(DAY, NEXT)

    assert values("benefit_used") == {
        (DAY, ours.id, benefit.code): 2,
        (DAY, theirs.id, benefit.code): 1,
        (NEXT, ours.id, benefit.code): 1,
    }
    assert values("benefit_rating_sum") == {(DAY, ours.id, benefit.code): 8, (NEXT, ours.id, benefit.code): 4}
    name = benefit.name["zh_CN"]
    assert dashboard.benefits(Period(DAY, DAY), Scope()).rows == [[name, 3, 2, 4.0]]
    assert dashboard.benefits(Period(DAY, NEXT), Scope(dealer_id=ours.id)).rows == [[name, 3, 3, 4.0]]
    assert dashboard.benefits(Period(DAY, NEXT), Scope(), "en").rows[0][0] == benefit.name["en"]
