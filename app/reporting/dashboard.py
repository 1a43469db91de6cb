"""The operator dashboard's figures, read from ``daily_metrics`` only (plus the small reference
tables that name things and hold targets and budgets: dealers, staff, enrollment targets,
campaigns, benefits). A page view never scans members, the ledger or notifications.

Each chart is a table of numbers (``Chart.columns`` / ``Chart.rows``): the page draws it and the
CSV export is the same table. A dealer manager's ``Scope`` limits every figure to his dealer.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app.benefits.models import Benefit
from app.campaigns.models import Campaign
from app.core.clock import business_day_start, business_today, parse_day
from app.core.db import db
from app.core.errors import NotFound, ValidationFailed
from app.core.i18n import _, _l
from app.dealers.models import Dealer, EnrollmentTarget, Staff
from app.operators.models import Operator
from app.points.settlement import POINT_VALUE_FEN
from app.reporting.models import ALL_DEALERS, MONTHLY_SUFFIX, DailyMetric
from app.reporting.rollup import MONTHLY

DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP = 20
#: Referral stages in funnel order (each counts the referrals that reached it).
FUNNEL = ("lead", "test_drive", "order", "delivery")
NOTIFICATION_STATES = ("sent", "delivered", "failed", "skipped", "planned", "sending")


#: A dealer id no row has: the scope of a dealer manager whose account names no dealer.
NO_DEALER_AT_ALL = -2


@dataclass(frozen=True)
class Scope:
    """Whose figures: every dealer's (HQ) or one dealer's (``dealer_id``)."""

    dealer_id: int | None = None

    def rows(self, *, per_dealer: bool = False) -> sa.ColumnElement[bool]:
        """HQ reads the rows summed over the dealers, unless it wants them per dealer."""
        if self.dealer_id is not None:
            return DailyMetric.dealer_id == self.dealer_id
        return DailyMetric.dealer_id != ALL_DEALERS if per_dealer else DailyMetric.dealer_id == ALL_DEALERS


@dataclass(frozen=True)
class Period:
    first: dt.date
    last: dt.date

    @property
    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass
class Chart:
    """One chart: how to draw it (``kind``) and its numbers (the CSV is exactly these)."""

    name: str
    title: Any
    kind: str  # line, bar, stacked, pie, funnel, hbar
    columns: list[Any]
    rows: list[list[Any]] = field(default_factory=list)
    #: The console's label table for the codes in the first column (tiers, complaint categories…),
    #: or one table per code where that column holds a tuple of codes (kind, channel).
    labels: str | tuple[str, ...] | None = None
    #: Columns (by index) drawn on a second axis (rates in %, money in ¥).
    right_axis: tuple[int, ...] = ()


def period(first: str | None, last: str | None) -> Period:
    """The date range asked for (``YYYY-MM-DD``), by default the last 30 days up to today."""
    errors: dict[str, list[str]] = {}

    def parse(name: str, text: str | None, default: dt.date) -> dt.date:
        if not text:
            return default
        try:
            return parse_day(text)
        except ValueError:
            errors[name] = [_("Give a date as YYYY-MM-DD.")]
            return default

    today = business_today()
    end = parse("to", last, today)
    start = parse("from", first, end - dt.timedelta(days=DEFAULT_DAYS - 1))
    if not errors and start > end:
        errors["to"] = [_("The end date is before the start date.")]
    if not errors and (end - start).days >= MAX_DAYS:
        errors["from"] = [_("At most %(days)s days at a time.", days=MAX_DAYS)]
    if errors:
        raise ValidationFailed(fields=errors)
    return Period(start, end)


# --- reading the rollups ---------------------------------------------------------------------


def _sums(metric: str, when: Period, scope: Scope, *by: str) -> dict[tuple, int]:
    """``sum(value)`` of one metric over the period, grouped by some of day, dealer_id, key.

    A flow summed over the whole period reads the month rows of the months inside it and the
    daily rows only of the partial months at either end."""
    if "day" in by or metric not in MONTHLY:
        return _summed(metric, [when], scope, by)
    first_month = when.first if when.first.day == 1 else _next_month(when.first)
    after_last = _next_month(when.last)
    end_month = after_last if when.last == after_last - dt.timedelta(days=1) else when.last.replace(day=1)
    if first_month >= end_month:
        return _summed(metric, [when], scope, by)
    parts = [Period(when.first, first_month - dt.timedelta(days=1)), Period(end_month, when.last)]
    result = _summed(metric, [p for p in parts if p.first <= p.last], scope, by)
    months = Period(first_month, end_month - dt.timedelta(days=1))
    for key, value in _summed(metric + MONTHLY_SUFFIX, [months], scope, by).items():
        result[key] = result.get(key, 0) + value
    return result


def _summed(metric: str, periods: list[Period], scope: Scope, by: tuple[str, ...]) -> dict[tuple, int]:
    if not periods:
        return {}
    columns = [getattr(DailyMetric, name) for name in by]
    in_periods = sa.or_(*(DailyMetric.day.between(p.first, p.last) for p in periods))
    query = (
        sa.select(*columns, sa.func.sum(DailyMetric.value))
        .where(DailyMetric.metric == metric, in_periods, scope.rows(per_dealer="dealer_id" in by))
        .group_by(*columns)
    )
    return {tuple(row[:-1]): int(row[-1]) for row in db.session.execute(query)}


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _by_day(metric: str, when: Period, scope: Scope) -> dict[dt.date, int]:
    return {key[0]: value for key, value in _sums(metric, when, scope, "day").items()}


def _last_day(metric: str, when: Period, scope: Scope) -> dt.date | None:
    query = sa.select(sa.func.max(DailyMetric.day)).where(
        DailyMetric.metric == metric, DailyMetric.day >= when.first, DailyMetric.day <= when.last, scope.rows()
    )
    return db.session.scalar(query)


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _yuan(fen: int) -> float:
    return round(fen / 100, 2)


# --- targets ---------------------------------------------------------------------------------


def _months(when: Period) -> list[dt.date]:
    months, month = [], when.first.replace(day=1)
    while month <= when.last:
        months.append(month)
        month = _next_month(month)
    return months


def _days_in(month: dt.date) -> int:
    return calendar.monthrange(month.year, month.month)[1]


def _targets(when: Period, scope: Scope, *, per_staff: bool) -> dict[tuple[dt.date, int], int]:
    """Monthly targets of the months the period touches, by (month, dealer or advisor)."""
    who = EnrollmentTarget.staff_id if per_staff else EnrollmentTarget.dealer_id
    query = sa.select(EnrollmentTarget.month, who, EnrollmentTarget.target).where(
        EnrollmentTarget.month.in_(_months(when)),
        EnrollmentTarget.staff_id.is_not(None) if per_staff else EnrollmentTarget.staff_id.is_(None),
    )
    if scope.dealer_id is not None:
        query = query.where(EnrollmentTarget.dealer_id == scope.dealer_id)
    return {(month, owner): target for month, owner, target in db.session.execute(query)}


def _prorated(targets: dict[tuple[dt.date, int], int], when: Period) -> dict[int, float]:
    """Each owner's target for the period: a month's target times the share of its days in it."""
    covered: dict[dt.date, int] = defaultdict(int)
    for day in when.days:
        covered[day.replace(day=1)] += 1
    result: dict[int, float] = defaultdict(float)
    for (month, owner), target in targets.items():
        result[owner] += target * covered[month] / _days_in(month)
    return result


# --- the charts ------------------------------------------------------------------------------


def new_members(when: Period, scope: Scope) -> Chart:
    counts = _by_day("new_members", when, scope)
    monthly: dict[dt.date, int] = defaultdict(int)
    for (month, _dealer), target in _targets(when, scope, per_staff=False).items():
        monthly[month] += target
    chart = Chart("new_members", _l("New members per day"), "line", [_l("Day"), _l("New members"), _l("Daily target")])
    for day in when.days:
        month = day.replace(day=1)
        chart.rows.append([day.isoformat(), counts.get(day, 0), round(monthly[month] / _days_in(month), 1)])
    return chart


def _names(model: Any, ids: Iterable[int], render: Callable[[Any], str]) -> dict[int, str]:
    wanted = [i for i in ids if i]
    if not wanted:
        return {}
    return {row.id: render(row) for row in db.session.scalars(sa.select(model).where(model.id.in_(wanted)))}


def new_members_by_dealer(when: Period, scope: Scope) -> Chart:
    counts = {key[0]: value for key, value in _sums("new_members", when, scope, "dealer_id").items()}
    targets = _prorated(_targets(when, scope, per_staff=False), when)
    owners = sorted(set(counts) | set(targets), key=lambda d: (-counts.get(d, 0), -targets.get(d, 0), d))[:TOP]
    names = _names(Dealer, owners, lambda d: f"{d.code} {d.name}")
    chart = Chart(
        "new_members_by_dealer",
        _l("New members per dealer against target"),
        "bar",
        [_l("Dealer"), _l("New members"), _l("Target")],
    )
    for owner in owners:
        name = names.get(owner) or str(_("No dealer"))
        chart.rows.append([name, counts.get(owner, 0), round(targets.get(owner, 0.0), 1)])
    return chart


def new_members_by_advisor(when: Period, scope: Scope) -> Chart:
    counts = {int(key[0]): value for key, value in _sums("new_members_advisor", when, scope, "key").items()}
    targets = _prorated(_targets(when, scope, per_staff=True), when)
    owners = sorted(set(counts) | set(targets), key=lambda s: (-counts.get(s, 0), -targets.get(s, 0), s))[:TOP]
    names = _names(Staff, owners, lambda s: f"{s.staff_code} {s.name}")
    chart = Chart(
        "new_members_by_advisor",
        _l("New members per advisor against target"),
        "bar",
        [_l("Advisor"), _l("New members"), _l("Target")],
    )
    for owner in owners:
        chart.rows.append([names.get(owner, str(owner)), counts.get(owner, 0), round(targets.get(owner, 0.0), 1)])
    return chart


def _daily_rate(
    when: Period, scope: Scope, *, code: str, title: Any, headers: list[Any], columns: tuple[str, str], part: str
) -> Chart:
    """A line per day of two metrics (``columns``, in the headers' order) and ``part`` as a % of the
    other one, on the right axis."""
    values = {metric: _by_day(metric, when, scope) for metric in columns}
    (whole,) = set(columns) - {part}
    chart = Chart(code, title, "line", headers, right_axis=(3,))
    for day in when.days:
        row = [values[metric].get(day, 0) for metric in columns]
        chart.rows.append([day.isoformat(), *row, _percent(values[part].get(day, 0), values[whole].get(day, 0))])
    return chart


def activation(when: Period, scope: Scope) -> Chart:
    headers = [_l("Day"), _l("Pre-enrolled buyers"), _l("Activated since"), _l("Activation rate %")]
    columns = ("preenrolled", "preenrolled_activated")
    title = _l("Activation of pre-enrolled buyers")
    return _daily_rate(
        when, scope, code="activation", title=title, headers=headers, columns=columns, part="preenrolled_activated"
    )


def monthly_active(when: Period, scope: Scope) -> Chart:
    headers = [_l("Day"), _l("Active in the last 30 days"), _l("Members"), _l("Monthly active rate %")]
    columns = ("active_30d", "members_total")
    title = _l("Monthly active rate")
    return _daily_rate(
        when, scope, code="monthly_active", title=title, headers=headers, columns=columns, part="active_30d"
    )


def tier_mix(when: Period, scope: Scope) -> Chart:
    chart = Chart("tier_mix", _l("Tier mix"), "pie", [_l("Tier"), _l("Members")], labels="TIERS")
    last = _last_day("tier_mix", when, scope)
    if last is not None:
        counts = {key[0]: value for key, value in _sums("tier_mix", Period(last, last), scope, "key").items()}
        for tier in ("silver", "gold", "platinum", "diamond"):
            if counts.get(tier):
                chart.rows.append([tier, counts[tier]])
    return chart


def _points_by_day(when: Period, scope: Scope) -> dict[dt.date, tuple[int, int, int]]:
    """Issued (positive earn, adjust, transfer), redeemed (spent less refunds), expired, per day."""
    result: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (day, key), value in _sums("points", when, scope, "day", "key").items():
        if key in ("earn+", "adjust+", "transfer+"):
            result[day][0] += value
        elif key in ("spend-", "refund+"):
            result[day][1] -= value
        elif key == "expire-":
            result[day][2] -= value
    return {day: (v[0], v[1], v[2]) for day, v in result.items()}


def points(when: Period, scope: Scope) -> Chart:
    flows = _points_by_day(when, scope)
    chart = Chart(
        "points",
        _l("Points issued, redeemed and expired"),
        "bar",
        [_l("Day"), _l("Points issued"), _l("Points redeemed"), _l("Points expired")],
    )
    for day in when.days:
        chart.rows.append([day.isoformat(), *flows.get(day, (0, 0, 0))])
    return chart


def liability(when: Period, scope: Scope) -> Chart:
    balance = _by_day("points_balance", when, scope)
    value_fen = int(POINT_VALUE_FEN.value())
    chart = Chart(
        "liability",
        _l("Outstanding points liability"),
        "line",
        [_l("Day"), _l("Outstanding points"), _l("Liability ¥")],
        right_axis=(2,),
    )
    for day in when.days:
        chart.rows.append([day.isoformat(), balance.get(day, 0), _yuan(balance.get(day, 0) * value_fen)])
    return chart


def expiry_ratio(when: Period, scope: Scope) -> Chart:
    monthly: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for day, (issued, _redeemed, expired) in _points_by_day(when, scope).items():
        monthly[day.strftime("%Y-%m")][0] += issued
        monthly[day.strftime("%Y-%m")][1] += expired
    chart = Chart(
        "expiry_ratio",
        _l("Expiry ratio (expired ÷ issued)"),
        "bar",
        [_l("Month"), _l("Issued"), _l("Expired"), _l("Expiry ratio %")],
        right_axis=(3,),
    )
    for month in (m.strftime("%Y-%m") for m in _months(when)):
        issued, expired = monthly[month]
        chart.rows.append([month, issued, expired, _percent(expired, issued)])
    return chart


def red_packets(when: Period, scope: Scope) -> Chart:
    spent = {int(key[0]): value for key, value in _sums("red_packet_fen", when, scope, "key").items()}
    start, end = business_day_start(when.first), business_day_start(when.last + dt.timedelta(days=1))
    query = sa.select(Campaign).where(
        sa.or_(Campaign.id.in_(list(spent)), sa.and_(Campaign.starts_at < end, Campaign.ends_at >= start))
    )
    if scope.dealer_id is not None:
        query = query.where(Campaign.dealer_id == scope.dealer_id)
    chart = Chart(
        "red_packets", _l("Red-packet spend against budget"), "bar", [_l("Campaign"), _l("Spent ¥"), _l("Budget ¥")]
    )
    campaigns = sorted(db.session.scalars(query), key=lambda c: (-spent.get(c.id, 0), c.id))[:TOP]
    for campaign in campaigns:
        chart.rows.append([campaign.name, _yuan(spent.get(campaign.id, 0)), _yuan(campaign.budget_fen)])
    return chart


def benefits(when: Period, scope: Scope, locale: str = "zh_CN") -> Chart:
    used = {key[0]: value for key, value in _sums("benefit_used", when, scope, "key").items()}
    ratings = {key[0]: value for key, value in _sums("benefit_ratings", when, scope, "key").items()}
    totals = {key[0]: value for key, value in _sums("benefit_rating_sum", when, scope, "key").items()}
    codes = sorted(set(used) | set(ratings), key=lambda c: (-used.get(c, 0), c))[:TOP]
    names: dict[str, str] = {}
    for code, name in db.session.execute(
        sa.select(Benefit.code, Benefit.name).where(Benefit.code.in_(codes)).order_by(Benefit.id)
    ):
        names[code] = (name or {}).get(locale) or (name or {}).get("zh_CN") or code
    chart = Chart(
        "benefits",
        _l("Benefit use and ratings"),
        "bar",
        [_l("Benefit"), _l("Used"), _l("Ratings"), _l("Average rating")],
        right_axis=(3,),
    )
    for code in codes:
        count = ratings.get(code, 0)
        average = round(totals.get(code, 0) / count, 2) if count else 0.0
        chart.rows.append([names.get(code, code), used.get(code, 0), count, average])
    return chart


def referral_funnel(when: Period, scope: Scope) -> Chart:
    reached = {key[0]: value for key, value in _sums("referrals", when, scope, "key").items()}
    chart = Chart(
        "referral_funnel", _l("Referral funnel"), "funnel", [_l("Stage"), _l("Referrals")], labels="REFERRAL_STAGES"
    )
    for stage in FUNNEL:
        chart.rows.append([stage, reached.get(stage, 0)])
    return chart


def notifications(when: Period, scope: Scope) -> Chart:
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (key,), value in _sums("notifications", when, scope, "key").items():
        kind, channel, status = [*key.split("|"), "", ""][:3]
        counts[(kind, channel)][status] += value
    chart = Chart(
        "notifications",
        _l("Notification delivery per kind and channel"),
        "stacked",
        [
            _l("Kind · channel"),
            _l("Sent, no receipt yet"),
            _l("Delivered"),
            _l("Failed"),
            _l("Skipped"),
            _l("Waiting to send"),
        ],
        labels=("NOTIFICATION_KINDS", "NOTIFICATION_CHANNELS"),
    )
    ranked = sorted(counts, key=lambda k: (-sum(counts[k].values()), k))[:TOP]
    for name in ranked:
        row = counts[name]
        waiting = row.get("planned", 0) + row.get("sending", 0)
        chart.rows.append(
            [name, row.get("sent", 0), row.get("delivered", 0), row.get("failed", 0), row.get("skipped", 0), waiting]
        )
    return chart


def complaints(when: Period, scope: Scope) -> Chart:
    counts = {key[0]: value for key, value in _sums("complaints", when, scope, "key").items()}
    chart = Chart(
        "complaints",
        _l("Complaints: top 10 categories"),
        "hbar",
        [_l("Category"), _l("Complaints")],
        labels="COMPLAINT_CATEGORIES",
    )
    for category in sorted(counts, key=lambda c: (-counts[c], c))[:10]:
        chart.rows.append([category, counts[category]])
    return chart


CHARTS: dict[str, Callable[..., Chart]] = {
    "new_members": new_members,
    "new_members_by_dealer": new_members_by_dealer,
    "new_members_by_advisor": new_members_by_advisor,
    "activation": activation,
    "monthly_active": monthly_active,
    "tier_mix": tier_mix,
    "points": points,
    "liability": liability,
    "expiry_ratio": expiry_ratio,
    "red_packets": red_packets,
    "benefits": benefits,
    "referral_funnel": referral_funnel,
    "notifications": notifications,
    "complaints": complaints,
}


def chart(name: str, when: Period, scope: Scope, *, locale: str = "zh_CN") -> Chart:
    build = CHARTS.get(name)
    if build is None:
        raise NotFound()
    return build(when, scope, locale) if build is benefits else build(when, scope)


def all_charts(when: Period, scope: Scope, *, locale: str = "zh_CN") -> list[Chart]:
    return [chart(name, when, scope, locale=locale) for name in CHARTS]


def scope_for(operator: Operator) -> Scope:
    """HQ roles see every dealer; a dealer's manager his dealer only (none at all without one)."""
    if operator.role == "dealer_manager":
        return Scope(dealer_id=operator.dealer_id if operator.dealer_id is not None else NO_DEALER_AT_ALL)
    return Scope()
