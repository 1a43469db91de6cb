"""The dashboard's ``tier_mix`` and ``active_30d`` as running totals give the rows of their
definitions (a day × tier-span join, a day × 30-day movements join: quadratic, kept here as the
reference) on a random history: spans that begin and end inside, before and after the window,
same-instant changes, members enrolled after their first change or during the window, closed and
merged members, movements around the 30-day edge, expiries (never activity)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import sqlalchemy as sa

from app.core.clock import BUSINESS_TZ, business_day_start
from app.core.db import db
from app.points.models import PointEntry
from app.reporting import rollup
from app.reporting.models import DailyMetric
from app.tiers.models import TierChange
from tests import factories

pytestmark = pytest.mark.postgres

D0 = dt.date(2026, 11, 1)
D1 = dt.date(2026, 11, 20)
_DAYS = "SELECT generate_series(CAST(:d0 AS date), CAST(:d1 AS date), interval '1 day')::date AS day"
_END_OF = "((days.day + 1)::timestamp AT TIME ZONE 'Asia/Shanghai')"

REFERENCE = {
    "tier_mix": f"""
    WITH days AS ({_DAYS}),
    spans AS (SELECT c.member_id, c.to_tier, c.changed_at AS since,
                     lead(c.changed_at) OVER (PARTITION BY c.member_id ORDER BY c.changed_at, c.id) AS until
              FROM tier_changes c WHERE c.changed_at < :t1)
    SELECT days.day, COALESCE(m.enrolling_dealer_id, 0), s.to_tier, count(*)
    FROM days
    JOIN spans s ON s.since < {_END_OF} AND (s.until IS NULL OR s.until >= {_END_OF})
    JOIN members m ON m.id = s.member_id AND m.status NOT IN ('merged', 'closed') AND m.enrolled_at < {_END_OF}
    WHERE s.to_tier <> 'silver'
    GROUP BY 1, 2, 3""",
    "active_30d": f"""
    WITH days AS ({_DAYS}),
    act AS (SELECT DISTINCT (e.occurred_at AT TIME ZONE 'Asia/Shanghai')::date AS day, e.member_id
            FROM point_entries e WHERE e.kind <> 'expire' AND e.occurred_at >= :ta AND e.occurred_at < :t1)
    SELECT days.day, COALESCE(m.enrolling_dealer_id, 0), '', count(DISTINCT act.member_id)
    FROM days JOIN act ON act.day > days.day - 30 AND act.day <= days.day
    JOIN members m ON m.id = act.member_id AND m.status NOT IN ('merged', 'closed')
    GROUP BY 1, 2""",
}


def instant(rng: random.Random, first: dt.date, last: dt.date) -> dt.datetime:
    day = first + dt.timedelta(days=rng.randint(0, (last - first).days))
    local = dt.datetime.combine(day, dt.time(rng.choice([0, 7, 12, 23]), rng.choice([0, 59])), tzinfo=BUSINESS_TZ)
    return local.astimezone(dt.UTC)


@pytest.mark.parametrize("seed", [1, 2])
def test_running_totals_equal_the_day_by_day_definitions(app_ctx, seed):
    rng = random.Random(seed)
    dealers = [factories.dealer(), factories.dealer()]
    early, late = D0 - dt.timedelta(days=80), D1 + dt.timedelta(days=3)
    for n in range(40):
        member = factories.member(
            enrolling_dealer_id=rng.choice([*(d.id for d in dealers), None]),
            enrolled_at=instant(rng, early, D1 + dt.timedelta(days=1)),
        )
        member.status = rng.choices(["active", "closed", "merged", "frozen"], [8, 1, 1, 1])[0]
        changed = sorted(instant(rng, early, late) for _ in range(rng.randint(0, 4)))
        if changed and rng.random() < 0.2:
            changed.append(changed[-1])  # two changes at the same instant
        for at in changed:
            tier = rng.choice(["silver", "gold", "platinum", "diamond"])
            db.session.add(
                TierChange(member_id=member.id, from_tier=None, to_tier=tier, reason="t", tier_points=0, changed_at=at)
            )
        for k in range(rng.randint(0, 5)):
            at = instant(rng, D0 - dt.timedelta(days=40), late)
            db.session.add(
                PointEntry(
                    member_id=member.id,
                    currency="reward",
                    kind=rng.choice(["earn", "spend", "expire"]),
                    points=10,
                    idempotency_key=f"rt-{seed}-{n}-{k}",
                    source_type="test",
                    occurred_at=at,
                    created_at=at,
                )
            )
    db.session.flush()

    rollup.roll(D0, D1)

    params = {
        "d0": D0,
        "d1": D1,
        "t1": business_day_start(D1 + dt.timedelta(days=1)),
        "ta": business_day_start(D0 - dt.timedelta(days=29)),
    }
    for metric, sql in REFERENCE.items():
        expected = {(day, dealer, key): n for day, dealer, key, n in db.session.execute(sa.text(sql), params)}
        got = {
            (r.day, r.dealer_id, r.key): r.value
            for r in db.session.scalars(
                sa.select(DailyMetric).where(
                    DailyMetric.metric == metric, DailyMetric.dealer_id != -1, DailyMetric.key != "silver"
                )
            )
        }
        assert expected, metric
        assert got == expected, metric
