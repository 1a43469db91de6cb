"""The CRM outbox: rows written with the change, delivered per member in order, exactly once."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time

import pytest
import sqlalchemy as sa

from app import gateways
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.core.models import AuditEntry
from app.crm import delivery, outbox
from app.crm.models import CrmMemberSync, CrmOutboxEntry
from app.crm.payloads import build_change
from app.members import profile
from app.members import services as members
from app.members.models import Member
from app.points import ledger
from tests import factories
from tests.conftest import run_concurrently
from tests.crm_helpers import crm_fixture  # noqa: F401 - the crm fixture

LATER = dt.timedelta(days=1)


def _rows(member_id: int) -> list[CrmOutboxEntry]:
    return list(
        db.session.scalars(
            sa.select(CrmOutboxEntry).where(CrmOutboxEntry.member_id == member_id).order_by(CrmOutboxEntry.seq)
        )
    )


def _earn(member_id: int, points: int, key: str) -> None:
    ledger.earn(
        ledger.Earning(member_id=member_id, currency="reward", points=points, idempotency_key=key, source_type="t")
    )


def test_changes_write_outbox_rows_in_their_transaction_with_ids_only(app_ctx):
    member = factories.member(name="王小明")
    kinds = [row.kind for row in _rows(member.id)]
    assert kinds == ["member", "consent"]  # created, then its consent
    _earn(member.id, 100, "o-1")
    profile.update(member, {"city": "Shanghai"})
    profile.update(member, {"city": "Suzhou"})  # a second change of the same kind in this unit of work
    rows = _rows(member.id)
    assert [(r.seq, r.kind) for r in rows] == [(1, "member"), (2, "consent"), (3, "balance"), (4, "member")]
    assert all(r.status == "pending" and r.idempotency_key == f"loyalty-{member.id}-{r.seq}" for r in rows)
    assert "王小明" not in str([r.payload for r in rows])  # no personal data at rest


def test_a_rolled_back_change_leaves_no_outbox_row(app_ctx):
    member = factories.member()
    db.session.commit()
    before = len(_rows(member.id))
    with db.session.begin_nested() as savepoint:
        _earn(member.id, 5, "rb-1")
        savepoint.rollback()
    assert len(_rows(member.id)) == before
    _earn(member.id, 5, "rb-2")  # the marker went with the savepoint: a new row is written
    assert [r.kind for r in _rows(member.id)][-1] == "balance"


def test_a_failing_outbox_row_fails_the_commit_with_sqlalchemys_error(app_ctx, monkeypatch):
    """One member's one row goes to the driver directly (not the several-rows statement); its
    failure is still SQLAlchemy's error (the HTTP edge maps those) and the session recovers."""
    member = factories.member()
    db.session.commit()
    before = len(_rows(member.id))
    monkeypatch.setattr(outbox, "_number_and_insert", None)  # the one-row path only
    outbox.enqueue(10**12, "balance")  # no such member: the sync row's foreign key fails
    with pytest.raises(sa.exc.IntegrityError):
        db.session.commit()
    db.session.rollback()
    assert db.session.get(CrmMemberSync, 10**12) is None
    outbox.enqueue(member.id, "balance")
    db.session.commit()
    rows = _rows(member.id)
    assert len(rows) == before + 1 and rows[-1].kind == "balance" and rows[-1].seq == rows[-2].seq + 1
    assert rows[-1].idempotency_key == f"loyalty-{member.id}-{rows[-1].seq}" and rows[-1].payload == {}


def test_delivery_sends_the_current_state_and_records_it(app_ctx, crm):
    member = factories.member(name="李雷")
    _earn(member.id, 120, "d-1")
    db.session.commit()
    assert delivery.deliver_until_idle() == 3
    assert crm.accepted[member.member_no] == [1, 2, 3]
    first = crm.of("deliver")[0]
    assert first["key"] == f"loyalty-{member.id}-1"
    assert crm.records[member.member_no] == ("silver", 120)
    assert {r.status for r in _rows(member.id)} == {"delivered"}
    state = outbox.sync_state(member.id)
    assert (state.pending, state.dead) == (0, 0) and state.last_delivered_at is not None


def test_a_payload_carries_personal_data_only_in_the_request(app_ctx, crm):
    member = factories.member(name="韩梅梅", address="长春市绿园区西安大路1688号")
    db.session.commit()
    entry = _rows(member.id)[0]

    change = build_change(entry)
    assert change.payload["profile"]["name"] == "韩梅梅"
    assert change.payload["profile"]["address"] == "长春市绿园区西安大路1688号"  # the home address reaches the CRM
    assert change.payload["member"]["member_no"] == member.member_no


def test_refused_change_is_dead_at_once_and_holds_back_the_members_later_rows(app_ctx, crm):
    member = factories.member()
    db.session.commit()
    crm.fail_next("deliver", gateways.Refused("bad phone", code=422))
    delivery.deliver_until_idle()
    rows = _rows(member.id)
    assert [r.status for r in rows] == ["dead", "pending"]
    assert crm.accepted[member.member_no] == []
    assert outbox.sync_state(member.id).dead == 1

    outbox.retry(rows[0].id, actor=("cli", "tester"))
    db.session.commit()
    delivery.deliver_until_idle()
    assert crm.accepted[member.member_no] == [1, 2]
    actions = db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.subject_type == "crm_outbox")).all()
    assert actions == ["crm.outbox_retried"]


def test_skipping_a_dead_row_lets_the_rest_go_and_is_audited(app_ctx, crm):
    member = factories.member()
    db.session.commit()
    crm.fail_next("deliver", gateways.Refused("no", code=400))
    delivery.deliver_until_idle()
    dead = _rows(member.id)[0]
    with pytest.raises(Conflict):
        outbox.retry(_rows(member.id)[1].id, actor=("cli", "tester"))
    outbox.skip(dead.id, reason="CRM refuses the legacy record", actor=("cli", "tester"))
    db.session.commit()
    delivery.deliver_until_idle()
    assert crm.accepted[member.member_no] == [2]
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "crm.outbox_skipped"))
    assert entry.reason == "CRM refuses the legacy record"


def test_unavailable_backs_off_exponentially_and_dies_after_max_attempts(app_ctx, crm):
    member = factories.member()
    db.session.commit()
    crm.down = True
    now = utcnow()
    waits = []
    for _ in range(outbox.MAX_ATTEMPTS.value()):
        delivery.deliver_until_idle(now=now, limit=1)
        head = _rows(member.id)[0]
        db.session.refresh(head)
        if head.status == "dead":
            break
        waits.append((head.next_attempt_at - now).total_seconds())
        now = head.next_attempt_at
    assert head.status == "dead" and head.attempts == outbox.MAX_ATTEMPTS.value()
    assert "Unavailable" in head.last_error
    for n, wait in enumerate(waits, start=1):
        ceiling = min(outbox.BACKOFF_CAP_SECONDS, outbox.BACKOFF_BASE_SECONDS * 2 ** (n - 1))
        assert ceiling / 2 <= wait <= ceiling


def test_backoff_has_jitter():
    rng = random.Random(1)
    assert len({outbox.backoff(3, rng) for _ in range(20)}) > 10


@pytest.mark.postgres
@pytest.mark.committed
def test_1000_changes_to_50_members_by_4_workers_keep_order_and_arrive_once(app, crm):
    with app.app_context():
        member_ids = [factories.member().id for _ in range(50)]
        db.session.commit()
        numbers = dict(db.session.execute(sa.text("SELECT id, member_no FROM members")).all())

    def change(worker: int) -> None:
        with app.app_context():
            for n in range(240):  # 4 × 240 = 960 earnings, plus 2 rows per member from enrollment
                _earn(member_ids[(worker * 7 + n) % 50], 1, f"w{worker}-{n}")
                db.session.commit()

    assert run_concurrently(4, change) == [None] * 4
    with app.app_context():
        total = db.session.scalar(sa.select(sa.func.count()).select_from(CrmOutboxEntry))
        assert total == 50 * 2 + 960
        seqs = db.session.execute(sa.select(CrmOutboxEntry.member_id, CrmOutboxEntry.seq)).all()
        per_member: dict[int, list[int]] = {}
        for member_id, seq in seqs:
            per_member.setdefault(member_id, []).append(seq)
        assert all(sorted(s) == list(range(1, len(s) + 1)) for s in per_member.values())  # no gaps, no repeats

    crm.delay = 0.001  # long enough for the workers to interleave

    def work(_worker: int) -> int:
        with app.app_context():
            return delivery.deliver_until_idle(batch=5)  # 50 members: small batches let all 4 take part

    delivered = run_concurrently(4, work)
    assert all(isinstance(n, int) for n in delivered), delivered
    assert sum(delivered) == total
    assert min(delivered) > 0  # every worker took part
    assert crm.out_of_order == [] and crm.duplicates == 0
    assert crm.delivered() == total
    for member_id, member_seqs in per_member.items():
        assert crm.accepted[numbers[member_id]] == sorted(member_seqs)
    with app.app_context():
        statuses = db.session.scalars(sa.select(CrmOutboxEntry.status).distinct()).all()
        assert statuses == ["delivered"]
        assert db.session.scalar(sa.select(sa.func.count()).where(CrmMemberSync.last_delivered_at.is_(None))) == 0


@pytest.mark.postgres
@pytest.mark.committed
def test_crm_down_for_a_while_then_everything_is_delivered_in_order(app, crm):
    with app.app_context():
        members = [factories.member() for _ in range(5)]
        for i, member in enumerate(members):
            for n in range(3):
                _earn(member.id, 10, f"down-{i}-{n}")
                db.session.commit()
        numbers = [m.member_no for m in members]
        total = db.session.scalar(sa.select(sa.func.count()).select_from(CrmOutboxEntry))
        crm.down = True
        now = utcnow()
        for _round in range(4):  # four rounds of failures while it is down
            delivery.deliver_until_idle(now=now)
            now += dt.timedelta(hours=2)
        assert crm.delivered() == 0
        attempts = db.session.scalars(sa.select(CrmOutboxEntry.attempts).where(CrmOutboxEntry.attempts > 0)).all()
        assert len(attempts) == 5 and set(attempts) == {4}  # only each member's head was tried
        crm.down = False

    def work(_worker: int) -> int:
        with app.app_context():
            return delivery.deliver_until_idle(now=now, batch=2)

    assert sum(run_concurrently(3, work)) == total
    assert crm.delivered() == total and crm.out_of_order == [] and crm.duplicates == 0
    for number in numbers:
        assert crm.accepted[number] == list(range(1, len(crm.accepted[number]) + 1))


def test_a_slow_crm_cuts_a_batch_short_and_the_rest_waits_untouched(app_ctx, crm):
    members = [factories.member() for _ in range(3)]
    db.session.commit()
    crm.delay = 0.05
    attempts = outbox.deliver_batch(10, max_seconds=0.01)
    db.session.commit()
    assert len(attempts) == 1  # the first send always goes; then the time is up
    untouched = db.session.scalars(
        sa.select(CrmOutboxEntry).where(CrmOutboxEntry.status == "pending", CrmOutboxEntry.attempts == 0)
    ).all()
    assert len(untouched) == 2 * len(members) - 1


@pytest.mark.postgres
@pytest.mark.committed
def test_outbox_numbering_takes_its_locks_last_so_it_cannot_deadlock_with_the_ledger(app, crm):
    """A consent change then an earning, against an earning of the same member holding the account
    lock: numbering at enqueue time would take the sync-row lock first and deadlock."""
    with app.app_context():
        member_id = factories.member().id
        db.session.commit()
    both_changed = threading.Barrier(2, timeout=10)

    def consent_then_earn(_i: int) -> str:
        with app.app_context():
            member = db.session.get(Member, member_id)
            members.record_consent(member, policy_version="2026.1", granted=["marketing"], channel="cs")
            both_changed.wait()
            _earn(member_id, 5, "dl-a")  # waits for the other's account lock
            db.session.commit()
            return "ok"

    def earn_and_hold(_i: int) -> str:
        with app.app_context():
            _earn(member_id, 7, "dl-b")  # holds the account lock until the commit
            both_changed.wait()
            time.sleep(0.2)
            db.session.commit()
            return "ok"

    results = run_concurrently(2, lambda i: (consent_then_earn, earn_and_hold)[i](i))
    assert results == ["ok", "ok"]
    with app.app_context():
        seqs = db.session.scalars(
            sa.select(CrmOutboxEntry.seq).where(CrmOutboxEntry.member_id == member_id).order_by(CrmOutboxEntry.seq)
        ).all()
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 2 + 1 + 2
