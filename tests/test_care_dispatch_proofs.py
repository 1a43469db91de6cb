"""Proofs on PostgreSQL with real commits: several dispatchers send each notification exactly once,
a dispatcher killed mid-batch loses nothing and sends nothing twice, and the marketing caps and the
subscribe grants hold under concurrency."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.care import dispatch, notify, subscriptions
from app.care.models import Notification, SubscribeGrant
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.gateways.fakes import FakeOfficialAccount
from app.members import services
from app.members.models import WechatIdentity
from tests import factories
from tests.care_helpers import at_daytime
from tests.conftest import PG_URL, REDIS_URL, WECHAT
from tests.wechat_helpers import APP_ID

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.fixture(autouse=True)
def daytime():
    """10:00 in Shanghai (the clock ticking): rows due now are outside quiet hours, whenever the suite runs."""
    with at_daytime():
        yield


def followers(count: int, *, marketing: bool = False, miniapp: bool = False) -> list[int]:
    ids = []
    for _ in range(count):
        member = factories.member()
        db.session.add(
            WechatIdentity(
                app_kind="official", app_id=APP_ID, openid=f"o-{member.id}", member_id=member.id, following=True
            )
        )
        if miniapp:
            db.session.add(
                WechatIdentity(
                    app_kind="miniapp", app_id=WECHAT["MINIAPP_APP_ID"], openid=f"m-{member.id}", member_id=member.id
                )
            )
        if marketing:
            services.record_consent(member, policy_version="2026.1", granted=["marketing"], channel="miniapp")
        ids.append(member.id)
    db.session.commit()
    return ids


def plan_rows(member_ids: list[int], per_member: int, kind: str = "tier_dropped") -> int:
    """``per_member`` due rows per member, written set-based like the planners do."""
    statement = sa.text(
        """
        INSERT INTO notifications (member_id, kind, channel, dedupe_key, status, due_at, period, payload,
                                   attempts, created_at)
        SELECT m, CAST(:kind AS text), 'official_template', CAST(:kind AS text) || ':' || m || ':' || n, 'planned',
               CAST(:due_at AS timestamptz),
               n::text, CAST(:payload AS json), 0, CAST(:due_at AS timestamptz)
        FROM unnest(CAST(:members AS bigint[])) AS m, generate_series(1, :per_member) AS n
        """
    )
    payload = json.dumps({"from_tier": "gold", "to_tier": "silver"} if kind == "tier_dropped" else {})
    db.session.execute(
        statement,
        {
            "kind": kind,
            "payload": payload,
            "members": member_ids,
            "per_member": per_member,
            "due_at": utcnow() - dt.timedelta(minutes=1),
        },
    )
    db.session.commit()
    return len(member_ids) * per_member


def statuses() -> dict[str, int]:
    rows = db.session.execute(sa.select(Notification.status, sa.func.count()).group_by(Notification.status))
    return dict(rows.all())


def dispatchers(app, count: int) -> list[int]:
    """``count`` dispatchers side by side, each its own thread, app context and session; waits as long
    as they take (10,000 sends on a shared two-core machine can outlast ``run_concurrently``'s wait)."""
    barrier = threading.Barrier(count)

    def dispatcher(_: int) -> int:
        barrier.wait()
        with app.app_context():
            return notify.send_due()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(dispatcher, range(count)))


def dying_dispatcher(tmp_path: Path, *, die_after: int) -> list[str]:
    """Run ``tests.care_dispatcher_probe`` until it dies; the openids WeChat accepted from it."""
    journal = tmp_path / "calls.jsonl"
    probe = [sys.executable, "-m", "tests.care_dispatcher_probe", PG_URL, REDIS_URL, str(journal)]
    done = subprocess.run(
        [*probe, str(die_after), utcnow().isoformat()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    return [json.loads(line)["touser"] for line in journal.read_text().splitlines()]


def test_three_dispatchers_over_10000_due_rows_send_each_exactly_once(app, fakes):
    with app.app_context():
        members = followers(100)
        total = plan_rows(members, per_member=100)
    assert total == 10_000
    handled = dispatchers(app, 3)
    assert sum(handled) == total
    assert min(handled) > 0  # all three took part
    calls = fakes.official_account.templates()
    assert len(calls) == total
    per_member: dict[str, int] = {}
    for call in calls:
        per_member[call["touser"]] = per_member.get(call["touser"], 0) + 1
    assert per_member == {f"o-{member_id}": 100 for member_id in members}
    with app.app_context():
        assert statuses() == {"sent": total}
        msgids = db.session.scalars(sa.select(Notification.wechat_msgid)).all()
        assert len(set(msgids)) == total and None not in msgids


def test_a_dispatcher_killed_mid_batch_loses_nothing_and_sends_nothing_twice(app, fakes, tmp_path):
    with app.app_context():
        members = followers(120)
        plan_rows(members, per_member=1)
        tunables.set_value("care.claim_batch", 50, actor=("test", "proof"))  # the dead one claims 50 of 120
        db.session.commit()
    sent_by_the_dead = dying_dispatcher(tmp_path, die_after=30)
    assert len(sent_by_the_dead) == 30
    # The dead dispatcher claimed a batch and kept ``width`` calls in flight, each call's attempt
    # committed before it, its outcome committed with the next attempts: at any moment at most
    # ``width`` rows were attempted without an outcome on record.
    with app.app_context():
        width, batch = notify.CONCURRENCY.value(), dispatch.BATCH_SIZE.value()
        assert batch == 50
        left = statuses()
        recorded = left["sent"]
        assert 30 - width <= recorded < 30 and left == {"sent": recorded, "sending": batch - recorded, "planned": 70}
        assert notify.send_due() == 120 - batch  # the live dispatchers carry on; the claimed rows wait
        db.session.commit()
        attempted = db.session.scalar(
            sa.select(sa.func.count()).where(Notification.status == "sending", Notification.attempted_at.is_not(None))
        )
        assert 30 - recorded <= attempted <= width
        later = utcnow() + dispatch.STALLED_AFTER + dispatch.STALLED_AFTER
        assert dispatch.sweep_stalled(later) == batch - recorded
        db.session.commit()
        assert notify.send_due() == batch - recorded - attempted  # claimed by the dead one, never attempted: once
        unknown = db.session.scalars(sa.select(Notification).where(Notification.status == "failed")).all()
        assert {row.error for row in unknown} == {"outcome unknown: the sender stopped during the call"}
        assert statuses() == {"sent": 120 - attempted, "failed": attempted}
        in_doubt = {f"o-{row.member_id}" for row in unknown}
    # The calls in flight when it died: those WeChat accepted are failed, not resent (at most once);
    # those that never went out are failed too. The bound: ``width`` rows per dead dispatcher.
    assert len(set(sent_by_the_dead) & in_doubt) == 30 - recorded
    every_call = sent_by_the_dead + [call["touser"] for call in fakes.official_account.templates()]
    assert len(every_call) == len(set(every_call))  # none twice
    assert set(every_call) | in_doubt == {f"o-{member_id}" for member_id in members}  # none lost unaccounted


def lanes(count: int) -> None:
    """Each dispatcher works on ``count`` batches at once (``care.dispatch_lanes``); committed."""
    tunables.set_value("care.dispatch_lanes", count, actor=("test", "proof"))
    db.session.commit()


def test_three_dispatchers_of_two_lanes_each_send_each_row_exactly_once(app, fakes):
    with app.app_context():
        members = followers(40)
        total = plan_rows(members, per_member=50)
        lanes(2)
        tunables.set_value("care.claim_batch", 40, actor=("test", "proof"))
        db.session.commit()
    handled = dispatchers(app, 3)
    assert sum(handled) == total == 2000
    calls = [call["touser"] for call in fakes.official_account.templates()]
    assert len(calls) == total
    assert {member: calls.count(f"o-{member}") for member in members} == dict.fromkeys(members, 50)
    with app.app_context():
        assert statuses() == {"sent": total}


class CountingOfficialAccount(FakeOfficialAccount):
    """Answers after a short wait, counting the calls in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most_in_flight = 0
        self.counting = threading.Lock()

    def send_template(self, openid, template_id, data, *, url=None) -> int:
        with self.counting:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.01)
        with self.counting:
            self.in_flight -= 1
        return super().send_template(openid, template_id, data, url=url)


def test_the_lanes_of_a_dispatcher_share_its_calls_in_flight(app, fakes, monkeypatch):
    counting = CountingOfficialAccount()
    monkeypatch.setattr(fakes, "official_account", counting)  # this test only
    with app.app_context():
        plan_rows(followers(30), per_member=8)
        lanes(3)
        tunables.set_value("care.claim_batch", 10, actor=("test", "proof"))
        tunables.set_value("care.send_concurrency", 4, actor=("test", "proof"))
        db.session.commit()
        assert notify.send_due() == 240
        assert statuses() == {"sent": 240}
    assert len(counting.templates()) == 240
    assert counting.most_in_flight == 4  # three lanes, never more than the dispatcher's width at once


def test_a_dispatcher_of_two_lanes_killed_leaves_at_most_its_width_in_doubt(app, fakes, tmp_path):
    with app.app_context():
        members = followers(120)
        plan_rows(members, per_member=1)
        lanes(2)
        tunables.set_value("care.claim_batch", 20, actor=("test", "proof"))
        db.session.commit()
    sent_by_the_dead = dying_dispatcher(tmp_path, die_after=50)
    assert len(sent_by_the_dead) == 50
    with app.app_context():
        width = notify.CONCURRENCY.value()
        left = statuses()
        recorded = left["sent"]
        attempted = db.session.scalar(
            sa.select(sa.func.count()).where(Notification.status == "sending", Notification.attempted_at.is_not(None))
        )
        # both lanes' calls counted together: at most ``width`` attempted without an outcome on record
        assert 50 - width <= recorded < 50 and 50 - recorded <= attempted <= width
        claimed = left["sending"]
        assert left.get("planned", 0) == 120 - recorded - claimed
        assert notify.send_due() == 120 - recorded - claimed
        later = utcnow() + dispatch.STALLED_AFTER + dispatch.STALLED_AFTER
        assert dispatch.sweep_stalled(later) == claimed
        db.session.commit()
        assert notify.send_due() == claimed - attempted
        unknown = db.session.scalars(sa.select(Notification).where(Notification.status == "failed")).all()
        assert statuses() == {"sent": 120 - attempted, "failed": attempted}
        in_doubt = {f"o-{row.member_id}" for row in unknown}
    assert len(set(sent_by_the_dead) & in_doubt) == 50 - recorded
    every_call = sent_by_the_dead + [call["touser"] for call in fakes.official_account.templates()]
    assert len(every_call) == len(set(every_call))  # none twice
    assert set(every_call) | in_doubt == {f"o-{member_id}" for member_id in members}  # none lost unaccounted


@pytest.mark.parametrize("lane_count", [1, 2])
def test_the_marketing_cap_holds_with_three_dispatchers_on_one_member(app, fakes, lane_count):
    with app.app_context():
        lanes(lane_count)
        (member,) = followers(1, marketing=True)
        plan_rows([member], per_member=6, kind="anniversary")
        db.session.execute(sa.update(Notification).values(period="2026"))  # the renderer reads the year
        db.session.commit()
    dispatchers(app, 3)
    assert len(fakes.official_account.templates()) == 1
    with app.app_context():
        assert statuses() == {"sent": 1, "planned": 5}
        held = db.session.scalars(sa.select(Notification).where(Notification.status == "planned")).all()
        assert {row.error for row in held} == {"postponed: marketing frequency cap"}
        assert all(row.due_at > utcnow() for row in held)


@pytest.mark.parametrize("lane_count", [1, 2])
def test_one_grant_is_used_by_one_message_whatever_the_dispatchers_do(app, fakes, lane_count):
    with app.app_context():
        lanes(lane_count)
        (member,) = followers(1, miniapp=True)
        subscriptions.record(member, "request-once-1", {"tier-dropped-subscribe": "accept"})
        db.session.commit()
        plan_rows([member], per_member=4)
    dispatchers(app, 3)
    assert len(fakes.mini_app.subscribes()) == 1
    assert len(fakes.official_account.templates()) == 3
    with app.app_context():
        grant = db.session.scalar(sa.select(SubscribeGrant))
        assert (grant.available, grant.used_total) == (0, 1)
