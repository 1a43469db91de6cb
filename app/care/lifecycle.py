"""Member lifecycle stage (SPEC §1): new, growing, mature, churn_risk, churned, judged nightly.

The stage is decided from the member's last interaction, the time since enrollment and the cars
they own (rules in the program setting ``care.lifecycle_rules``, first match wins):

* ``churned``    — no interaction for ``churned_days`` (365);
* ``churn_risk`` — no interaction for ``churn_risk_days`` (90, "3 months without interaction");
* ``new``        — enrolled less than ``new_days`` (90) ago;
* ``mature``     — enrolled ``mature_years`` (2) or more ago, or owning ``mature_vehicles`` (2) cars;
* ``growing``    — everyone else.

An interaction is anything the member did that we record against them: points earned or spent
(purchases, service visits, insurance, redemptions: ``point_accounts.last_activity_at``), a mini-app
sign-in, following the service account, a chat message to it (``wechat_identities.last_message_at``,
stamped at most once an hour), activation or enrollment.

The pass walks members in id order (keyset pages). On PostgreSQL the page query itself judges
(``stage_sql``, the same rules as ``stage_for``) and brings the recorded stage along, so Python
only touches the members whose stage changed; elsewhere (SQLite) ``stage_for`` judges each row.
The changed members' ``member_lifecycle`` rows are locked and read again before writing, so two
passes at once serialize on them and the second sees no change. Only a change writes: the
current row, ``members.lifecycle_stage`` and one append-only history row. Entering ``churn_risk``
plans a win-back message and opens a customer-service callback task (active members only), both
once per (member, day entered).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.care import callbacks, notify, rules
from app.care.models import MemberLifecycle, MemberLifecycleHistory
from app.core import tunables
from app.core.clock import BUSINESS_TZ, business_day_start, business_today, to_business, utcnow
from app.core.db import db
from app.members.models import Member, MiniappSession, Ownership, WechatIdentity
from app.points.models import PointAccount

RULES = tunables.define(
    "care.lifecycle_rules",
    {"new_days": 90, "churn_risk_days": 90, "churned_days": 365, "mature_years": 2, "mature_vehicles": 2},
    "Member lifecycle stages: days without interaction to churn risk / churned, days a member is new, "
    "years or cars that make a member mature",
)
#: Members judged per page (one lock set, one round of writes).
PAGE = 2000
CHURN_REASON = "churn_risk"


@dataclass
class LifecycleRun:
    judged: int = 0
    changed: int = 0
    entered_churn_risk: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)


def _months_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def stage_for(
    now: dt.datetime, enrolled_at: dt.datetime, last_interaction_at: dt.datetime, vehicles: int, rules: dict[str, int]
) -> str:
    """The stage the rules give (see the module docstring)."""
    idle = now - last_interaction_at
    if idle >= dt.timedelta(days=rules["churned_days"]):
        return "churned"
    if idle >= dt.timedelta(days=rules["churn_risk_days"]):
        return "churn_risk"
    if now - enrolled_at < dt.timedelta(days=rules["new_days"]):
        return "new"
    enrolled_on, today = to_business(enrolled_at).date(), to_business(now).date()
    if enrolled_on <= _months_before(today, rules["mature_years"]) or vehicles >= rules["mature_vehicles"]:
        return "mature"
    return "growing"


def stage_sql(
    now: dt.datetime,
    enrolled_at: sa.ColumnElement[dt.datetime],
    last_interaction_at: sa.ColumnElement[dt.datetime],
    vehicles: sa.ColumnElement[int],
    rules: dict[str, int],
) -> sa.ColumnElement[str]:
    """``stage_for`` in PostgreSQL's SQL (same order, same bounds; the maturity date on the
    business calendar), for the page query to judge without sending every member to Python."""
    at = sa.bindparam("lifecycle_now", now, type_=sa.DateTime(timezone=True))
    idle = at - last_interaction_at
    today = to_business(now).date()
    enrolled_on = sa.cast(sa.func.timezone(str(BUSINESS_TZ), enrolled_at), sa.Date)
    mature_before = sa.bindparam("lifecycle_mature_before", _months_before(today, rules["mature_years"]), sa.Date)
    return sa.case(
        (idle >= sa.bindparam("lifecycle_churned", dt.timedelta(days=rules["churned_days"]), sa.Interval), "churned"),
        (
            idle >= sa.bindparam("lifecycle_churn_risk", dt.timedelta(days=rules["churn_risk_days"]), sa.Interval),
            "churn_risk",
        ),
        (at - enrolled_at < sa.bindparam("lifecycle_new", dt.timedelta(days=rules["new_days"]), sa.Interval), "new"),
        (sa.or_(enrolled_on <= mature_before, vehicles >= rules["mature_vehicles"]), "mature"),
        else_="growing",
    )


def _judged_page_query(after: int, limit: int, now: dt.datetime, rules: dict[str, int]) -> sa.Select:
    """PostgreSQL: the page judged in SQL, with the stage on record (None: never judged)."""
    page = _page_query(after, limit, now).subquery("page")
    last = sa.func.greatest(
        page.c.enrolled_at,
        page.c.activated_at,
        page.c.signed_in_at,
        page.c.followed_at,
        page.c.messaged_at,
        page.c.points_at,
    )  # greatest() skips NULLs, like last_interaction
    stage = stage_sql(now, page.c.enrolled_at, last, page.c.vehicles, rules)
    changed = stage.is_distinct_from(MemberLifecycle.stage)
    judged = (
        sa.select(
            page.c.id,
            stage.label("stage"),
            changed.label("changed"),
            page.c.status,
            last.label("last_interaction_at"),
        )
        .select_from(page)
        .outerjoin(MemberLifecycle, MemberLifecycle.member_id == page.c.id)
        .cte("judged")
    )
    # Only the members whose stage changed come back one by one, with their data; the others are
    # counted per stage (``id`` NULL), so that a page is a few rows to Python, not 2,000.
    changes = sa.select(
        judged.c.id,
        judged.c.stage,
        judged.c.status,
        judged.c.last_interaction_at,
        sa.literal(0).label("members"),
        judged.c.id.label("last_id"),
    ).where(judged.c.changed)
    counts = sa.select(
        sa.literal(None, judged.c.id.type),
        judged.c.stage,
        sa.literal(None, judged.c.status.type),
        sa.literal(None, judged.c.last_interaction_at.type),
        sa.func.count(),
        sa.func.max(judged.c.id),
    ).group_by(judged.c.stage)
    return sa.union_all(changes, counts)  # type: ignore[return-value]


def _page_query(after: int, limit: int, now: dt.datetime) -> sa.Select:
    signed_in = (
        sa.select(sa.func.max(MiniappSession.signed_in_at))
        .join(WechatIdentity, WechatIdentity.id == MiniappSession.identity_id)
        .where(WechatIdentity.member_id == Member.id)
        .scalar_subquery()
    )
    followed = (
        sa.select(sa.func.max(WechatIdentity.followed_at))
        .where(WechatIdentity.member_id == Member.id)
        .scalar_subquery()
    )
    messaged = (
        sa.select(sa.func.max(WechatIdentity.last_message_at))
        .where(WechatIdentity.member_id == Member.id)
        .scalar_subquery()
    )
    points = sa.select(PointAccount.last_activity_at).where(PointAccount.member_id == Member.id).scalar_subquery()
    vehicles = (
        sa.select(sa.func.count())
        .select_from(Ownership)
        .where(Ownership.member_id == Member.id, Ownership.role == "owner", Ownership.ended_on.is_(None))
        .scalar_subquery()
    )
    return (
        sa.select(
            Member.id,
            Member.status,
            Member.enrolled_at,
            Member.activated_at,
            signed_in.label("signed_in_at"),
            followed.label("followed_at"),
            messaged.label("messaged_at"),
            points.label("points_at"),
            vehicles.label("vehicles"),
        )
        .where(
            Member.id > after,
            Member.status.in_(("active", "pre_enrolled", "frozen")),
            Member.enrolled_at <= now,
        )
        .order_by(Member.id)
        .limit(limit)
    )


def last_interaction(row: Any) -> dt.datetime:
    """The latest of the member's recorded interactions (enrollment at the least)."""
    moments = [row.enrolled_at, row.activated_at, row.signed_in_at, row.followed_at, row.messaged_at, row.points_at]
    return max(moment for moment in moments if moment is not None)


def _current_stages(member_ids: Sequence[int], *, lock: bool) -> dict[int, str | None]:
    """The stages on record, locked (in id order) unless this is a dry run."""
    if not member_ids:
        return {}
    query = (
        sa.select(MemberLifecycle.member_id, MemberLifecycle.stage)
        .where(MemberLifecycle.member_id.in_(member_ids))
        .order_by(MemberLifecycle.member_id)
    )
    return dict(db.session.execute(query.with_for_update() if lock else query).all())  # type: ignore[arg-type]


def _first_judgements(judged: dict[int, tuple[str, dt.datetime]], now: dt.datetime) -> set[int]:
    """Insert rows for the page's members never judged, in one statement; returns those this pass
    inserted (a concurrent pass may have inserted some first: they are compared like any other)."""
    if not judged:
        return set()
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    rows = [
        {"member_id": m, "stage": stage, "since": now, "last_interaction_at": last, "computed_at": now}
        for m, (stage, last) in judged.items()
    ]
    table = MemberLifecycle.__table__
    statement = insert(table).values(rows).on_conflict_do_nothing(index_elements=["member_id"])
    return set(db.session.scalars(statement.returning(table.c.member_id)))


def _enter_churn_risk(member_ids: list[int], today: dt.date) -> None:
    """A win-back message at 09:00 and an open callback task, once per (member, day entered)."""
    period = today.isoformat()
    for member_id in member_ids:
        notify.queue(member_id, "win_back", period=period, payload={}, due_at=rules.reminder_time(today))
        callbacks.open_task(member_id, CHURN_REASON, period)


Change = tuple[int, str | None, str, dt.datetime]  # member, from stage, to stage, last interaction


def _apply(changes: list[Change], fresh: set[int], now: dt.datetime) -> None:
    """Write the page's changes: the current rows (those inserted just now already are), the
    mirror on ``members`` and one history row each."""
    if not changes:
        return
    existing = [change for change in changes if change[0] not in fresh]
    if existing:
        db.session.execute(
            sa.update(MemberLifecycle.__table__)
            .where(MemberLifecycle.__table__.c.member_id == sa.bindparam("m_id"))
            .values(
                stage=sa.bindparam("m_stage"), since=now, last_interaction_at=sa.bindparam("m_last"), computed_at=now
            ),
            [{"m_id": m, "m_stage": to, "m_last": last} for m, _old, to, last in existing],
        )
    db.session.execute(
        sa.update(Member.__table__)
        .where(Member.__table__.c.id == sa.bindparam("m_id"))
        .values(lifecycle_stage=sa.bindparam("m_stage")),
        [{"m_id": m, "m_stage": to} for m, _old, to, _last in changes],
    )
    db.session.execute(
        sa.insert(MemberLifecycleHistory.__table__),
        [{"member_id": m, "from_stage": old, "to_stage": to, "at": now} for m, old, to, _last in changes],
    )


def _read_page(
    rows: Sequence[Any], run: LifecycleRun, after: int, now: dt.datetime, thresholds: dict[str, int], *, in_sql: bool
) -> tuple[int, set[int], dict[int, tuple[str, dt.datetime]]]:
    """Count a page's stages into ``run``; returns the keyset bound, the active members among those
    that may change, and those members' (stage, last interaction), in id order."""
    judged: dict[int, tuple[str, dt.datetime]] = {}
    if in_sql:  # the changed members one by one, the rest counted per stage
        active = {row.id for row in rows if row.id is not None and row.status == "active"}
        for row in sorted(rows, key=lambda row: row.last_id):
            if row.id is None:
                run.by_stage[row.stage] = run.by_stage.get(row.stage, 0) + row.members
                run.judged += row.members
                after = max(after, row.last_id)
            else:
                judged[row.id] = (row.stage, row.last_interaction_at)
        return after, active, judged
    active = {row.id for row in rows if row.status == "active"}
    for row in rows:
        last = last_interaction(row)
        stage = stage_for(now, row.enrolled_at, last, row.vehicles, thresholds)
        judged[row.id] = (stage, last)
        run.by_stage[stage] = run.by_stage.get(stage, 0) + 1
    run.judged += len(rows)
    return rows[-1].id, active, judged


def judge(
    now: dt.datetime | None = None, *, dry_run: bool = False, page: int = PAGE, commit_each_page: bool = False
) -> LifecycleRun:
    """Judge every member's stage (see the module docstring); flushes, the caller commits (the
    nightly job commits each page, so its locks are held for one page only).

    A dry run counts the stages and who would enter churn risk, and writes nothing."""
    now = now or utcnow()
    today = to_business(now).date()
    thresholds, run, after = RULES.value(), LifecycleRun(), 0
    in_sql = db.dialect == "postgresql"
    while True:
        query = _judged_page_query(after, page, now, thresholds) if in_sql else _page_query(after, page, now)
        rows = db.session.execute(query).all()
        if not rows:
            return run
        after, active, judged = _read_page(rows, run, after, now, thresholds, in_sql=in_sql)
        current = _current_stages(list(judged), lock=not dry_run)
        fresh: set[int] = set()
        if not dry_run:
            fresh = _first_judgements({m: v for m, v in judged.items() if m not in current}, now)
            lost = [m for m in judged if m not in current and m not in fresh]  # a concurrent pass was first
            current.update(_current_stages(lost, lock=True))
        changes: list[Change] = []
        for member_id, (stage, last) in judged.items():
            if member_id in fresh:
                changes.append((member_id, None, stage, last))
            elif current.get(member_id) != stage:
                changes.append((member_id, current.get(member_id), stage, last))
        run.changed += len(changes)
        entering = [m for m, old, to, _last in changes if to == "churn_risk" and old != "churn_risk" and m in active]
        run.entered_churn_risk += len(entering)
        if dry_run:
            continue
        _apply(changes, fresh, now)
        _enter_churn_risk(entering, today)
        if commit_each_page:
            db.session.commit()


def plan_win_backs(today: dt.date, *, dry_run: bool = False) -> int:
    """The churn-risk trigger as a planner (``flask care plan``, the nightly job): judge every member
    as of now, a page per commit, and return how many entered churn risk (each got a win-back and a
    callback task)."""
    now = utcnow() if today == business_today() else business_day_start(today)
    return judge(now, dry_run=dry_run, commit_each_page=not dry_run).entered_churn_risk
