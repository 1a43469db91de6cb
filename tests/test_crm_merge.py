"""Merging duplicates: every related row moves, balances add up, the old number still resolves."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.db import db
from app.core.errors import Conflict
from app.core.models import AuditEntry
from app.crm.models import CrmOutboxEntry
from app.members import merging
from app.members import services as members
from app.members.models import Consent, Member, MemberMerge, Ownership, WechatIdentity
from app.points import expiry, ledger
from app.points.models import PointAccount, PointEntry, PointLot
from app.tiers import policy as tiers
from app.tiers.models import TierState
from tests import factories
from tests.conftest import run_concurrently
from tests.test_ledger_properties import _invariants

START = dt.datetime(2025, 3, 10, 4, 0, tzinfo=dt.UTC)
_keys = itertools.count()

ledger_steps = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(1, 400), st.booleans(), st.integers(0, 120)),
        st.tuples(st.just("spend"), st.integers(1, 500)),
        st.tuples(st.just("reverse"), st.integers(0, 30), st.integers(1, 500)),
        st.tuples(st.just("tier"), st.integers(1, 200_000)),
    ),
    max_size=12,
)


def _credit(member_id: int, currency: str, points: int, at: dt.datetime, pending_days: int = 0) -> ledger.Posting:
    earning = ledger.Earning(
        member_id=member_id,
        currency=currency,
        points=points,
        idempotency_key=f"m-{next(_keys)}",
        source_type="prop",
        pending_days=pending_days,
    )
    return ledger.earn(earning, at=at)


def _play(member_id: int, steps: list[tuple], now: dt.datetime) -> None:
    earned: list[PointEntry] = []
    for step in steps:
        if step[0] == "earn":
            now += dt.timedelta(days=step[3])
            posting = _credit(member_id, "reward", step[1], now, pending_days=7 if step[2] else 0)
            earned.append(db.session.get(PointEntry, posting.id))
        elif step[0] == "spend":
            with contextlib.suppress(ledger.InsufficientPoints):
                ledger.spend(member_id, step[1], idempotency_key=f"m-{next(_keys)}", source_type="prop", at=now)
        elif step[0] == "reverse" and earned:
            original = earned[step[1] % len(earned)]
            left = original.points - ledger.reversed_points(original.id)
            if left > 0:
                ledger.reverse(
                    original, min(left, step[2]), idempotency_key=f"m-{next(_keys)}", source_type="prop", at=now
                )
        elif step[0] == "tier":
            _credit(member_id, "tier", step[1], now)
            account = db.session.get(PointAccount, member_id)
            db.session.refresh(account)
            tiers.apply_tier_points(member_id, account.tier_points, at=now)


def _account(member_id: int) -> tuple[int, int, int, int]:
    account = db.session.get(PointAccount, member_id)
    db.session.refresh(account)
    return account.reward_available, account.reward_pending, account.reward_debt, account.tier_points


def _open_lot_expiries(member_id: int) -> list[tuple[dt.datetime, str, int]]:
    rows = db.session.execute(
        sa.select(PointLot.expires_at, PointLot.status, PointLot.remaining).where(
            PointLot.member_id == member_id,
            PointLot.status.in_(("available", "pending", "held")),
            PointLot.remaining > 0,
        )
    ).all()
    return sorted((e, s, r) for e, s, r in rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(survivor_steps=ledger_steps, merged_steps=ledger_steps)
# found by the property: the survivor owes a point (a reversal after a spend) when the merged points arrive
@example(survivor_steps=[("earn", 1, False, 0), ("spend", 1), ("reverse", 0, 1)], merged_steps=[("earn", 1, False, 0)])
# found by the property: both owe a point; the survivor ends owing both (neither debt is paid)
@example(
    survivor_steps=[("earn", 1, False, 0), ("spend", 1), ("reverse", 0, 1)],
    merged_steps=[("earn", 1, False, 0), ("spend", 1), ("reverse", 0, 1)],
)
def test_a_merge_moves_the_ledger_and_the_balances_add_up(app_ctx, survivor_steps, merged_steps):
    survivor, merged = factories.member(), factories.member()
    _play(survivor.id, survivor_steps, START)
    _play(merged.id, merged_steps, START + dt.timedelta(days=3))
    s_avail, s_pending, s_debt, s_tier = _account(survivor.id)
    m_avail, m_pending, m_debt, m_tier = _account(merged.id)
    m_lots = _open_lot_expiries(merged.id)
    tiers_before = {tiers.current_tier(survivor.id), tiers.current_tier(merged.id)}

    merging.merge(survivor.id, [merged.id], request_key=f"prop-{next(_keys)}", actor=("crm", "crm"))

    assert _account(merged.id) == (0, 0, 0, 0)
    avail, pending, debt, tier_points = _account(survivor.id)
    assert avail + pending == s_avail + s_pending + m_avail + m_pending  # the balances add up
    assert tier_points == s_tier + m_tier
    assert avail == s_avail + m_avail and (debt == 0 or avail < 0)
    _invariants(survivor.id)
    _invariants(merged.id)
    # lots keep their expiry (the merged member's open lots reappear on the survivor, same dates)
    moved_in = db.session.execute(
        sa.select(PointLot.expires_at, PointLot.status, PointLot.points, PointLot.remaining)
        .join(PointEntry, PointEntry.id == PointLot.entry_id)
        .where(PointLot.member_id == survivor.id, PointEntry.reason_code == "merge_in")
    ).all()
    assert sorted((e, p) for e, _s, p, _r in moved_in) == sorted((e, r) for e, _s, r in m_lots)
    if s_debt == 0:
        assert sorted((e, s, p) for e, s, p, _r in moved_in) == m_lots
    else:  # the survivor owed points: the moved-in available points pay that debt first
        paid_off = s_debt + m_debt - debt  # the merged member's debt moves over too, unpaid by its own lots
        assert sum(r for *_rest, r in moved_in) == sum(r for *_rest, r in m_lots) - paid_off
    best = max(tiers_before | {tiers.tier_for_points(tier_points)}, key=tiers.tier_rank)
    assert tiers.current_tier(survivor.id) == best
    # the moves explain themselves
    kinds = set(
        db.session.scalars(
            sa.select(PointEntry.reason_code).where(PointEntry.member_id == merged.id, PointEntry.kind == "transfer")
        )
    )
    assert kinds <= {"merge_out"} and (kinds or not (m_lots or m_debt or m_tier))
    expiry.expire_due(START + dt.timedelta(days=3650))  # the moved lots expire like any other
    _invariants(survivor.id)


def test_a_merge_moves_every_related_row_and_keeps_the_old_number_resolving(app_ctx):
    survivor = factories.member(name="张三")
    merged = factories.member(name="张三", city="Beijing", address="北京市朝阳区1号")
    car = factories.vehicle(owner=merged)
    shared = factories.vehicle(owner=survivor)
    members.start_ownership(merged, shared, started_on=dt.date(2025, 1, 1), role="co_user")
    identity = WechatIdentity(member_id=merged.id, app_kind="official", app_id="wx1", openid="o-merged")
    db.session.add(identity)
    members.record_consent(merged, policy_version="2026.1", granted=["marketing"], channel="miniapp")
    ledger.earn(
        ledger.Earning(member_id=merged.id, currency="reward", points=300, idempotency_key="r-1", source_type="t")
    )
    merged_phone = merged.phone
    survivor.phone = None
    survivor.phone_index = None
    db.session.flush()

    record = merging.merge(survivor.id, [merged.id], request_key="crm:evt-1", actor=("crm", "crm"))

    db.session.refresh(merged)
    assert (merged.status, merged.merged_into_id) == ("merged", survivor.id)
    assert merged.phone is None and merged.name is None and (merged.address, merged.address_index) == (None, None)
    assert survivor.phone == merged_phone and survivor.city == "Beijing"  # blanks filled
    assert survivor.address == "北京市朝阳区1号" and survivor.address_index is not None
    assert members.find_by_phone(merged_phone).id == survivor.id
    assert members.find_by_member_no(merged.member_no).id == survivor.id
    assert members.find_member(merged.member_no).id == survivor.id
    assert db.session.get(WechatIdentity, identity.id).member_id == survivor.id
    car_links = db.session.scalars(sa.select(Ownership).where(Ownership.vehicle_id == car.id)).all()
    assert [o.member_id for o in car_links] == [survivor.id]
    co_use = db.session.scalar(
        sa.select(Ownership).where(Ownership.vehicle_id == shared.id, Ownership.role == "co_user")
    )
    assert co_use.end_reason == "merged"  # the survivor already owns it: one open link per car and member
    assert members.consent_state(survivor).purposes.get("marketing") is True
    assert db.session.scalar(sa.select(sa.func.count()).where(Consent.member_id == merged.id)) >= 2  # evidence stays
    assert _account(survivor.id)[0] == 300
    assert record.summary[str(merged.id)]["points"]["reward_points"] == 300
    actions = db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("member.merge%"))).all()
    assert sorted(actions) == ["member.merged", "member.merged_away"]
    kinds = db.session.scalars(
        sa.select(CrmOutboxEntry.kind).where(CrmOutboxEntry.member_id == survivor.id).order_by(CrmOutboxEntry.seq)
    ).all()
    assert "merge" in kinds

    again = merging.merge(survivor.id, [merged.id], request_key="crm:evt-1", actor=("crm", "crm"))
    assert again.id == record.id and _account(survivor.id)[0] == 300  # idempotent by request key


def test_the_higher_tier_survives(app_ctx):
    survivor, merged = factories.member(), factories.member()
    state = tiers.get_state(merged.id, lock=True)
    tiers.change_tier(state, "gold", "upgrade", 0, START)
    merging.merge(survivor.id, [merged.id], request_key="tier-1", actor=("crm", "crm"))
    assert db.session.get(TierState, survivor.id).tier == "gold"


def test_a_member_merged_elsewhere_is_refused(app_ctx):
    a, b, c = factories.member(), factories.member(), factories.member()
    merging.merge(a.id, [b.id], request_key="x-1", actor=("crm", "crm"))
    with pytest.raises(Conflict):
        merging.merge(c.id, [b.id], request_key="x-2", actor=("crm", "crm"))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_console_merge_is_requested_then_approved_by_another_supervisor(app_ctx, client):
    survivor, merged = factories.member(), factories.member()
    _agent, agent_token = factories.operator("agent")
    _sup, sup_token = factories.operator("supervisor")
    body = {"request_id": "req-00001", "survivor_id": survivor.id, "merged_ids": [merged.id], "reason": "同一客户"}
    response = client.post("/api/v1/cs/merges", json=body, headers=_auth(agent_token))
    assert response.status_code == 201, response.json
    merge_id = response.json["id"]
    assert response.json["status"] == "requested"
    assert db.session.get(Member, merged.id).status != "merged"
    assert client.post(f"/api/v1/cs/merges/{merge_id}/approve", headers=_auth(agent_token)).status_code == 403
    response = client.post(f"/api/v1/cs/merges/{merge_id}/approve", headers=_auth(sup_token))
    assert response.status_code == 200, response.json
    assert response.json["status"] == "applied"
    db.session.expire_all()
    assert db.session.get(Member, merged.id).merged_into_id == survivor.id
    again = client.post(f"/api/v1/cs/merges/{merge_id}/approve", headers=_auth(sup_token))
    assert again.status_code == 409


def test_console_merge_request_validates_fields(app_ctx, client):
    _agent, token = factories.operator("agent")
    response = client.post(
        "/api/v1/cs/merges", json={"request_id": "x", "survivor_id": 0, "merged_ids": []}, headers=_auth(token)
    )
    assert response.status_code == 422
    assert set(response.json["error"]["fields"]) >= {"request_id", "survivor_id", "merged_ids", "reason"}


def test_merge_outbox_row_tells_the_crm_which_numbers_went(app_ctx):
    survivor, merged = factories.member(), factories.member()
    merging.merge(survivor.id, [merged.id], request_key="o-1", actor=("crm", "crm"))
    row = db.session.scalar(
        sa.select(CrmOutboxEntry).where(CrmOutboxEntry.member_id == survivor.id, CrmOutboxEntry.kind == "merge")
    )
    assert row.payload["merged_ids"] == [merged.id]
    merge = db.session.scalar(sa.select(MemberMerge).where(MemberMerge.request_key == "o-1"))
    assert merge.status == "applied"


@pytest.mark.postgres
@pytest.mark.committed
def test_concurrent_merges_apply_once_and_opposite_merges_do_not_both_win(app):
    with app.app_context():
        a, b, c, d = (factories.member() for _ in range(4))
        for member in (a, b, c, d):
            _credit(member.id, "reward", 100, START)
        db.session.commit()
        ids = {"a": a.id, "b": b.id, "c": c.id, "d": d.id}

    def attempt(i: int) -> str:
        with app.app_context():
            if i < 4:  # the same CRM event delivered four times at once
                merging.merge(ids["a"], [ids["b"]], request_key="crm:same", actor=("crm", "crm"))
            else:  # c into d and d into c at the same moment
                survivor, merged = (ids["c"], ids["d"]) if i == 4 else (ids["d"], ids["c"])
                try:
                    merging.merge(survivor, [merged], request_key=f"crm:opp-{i}", actor=("crm", "crm"))
                except Conflict:
                    db.session.rollback()
                    return "refused"
            db.session.commit()
            return "ok"

    results = run_concurrently(6, attempt)
    assert results[:4] == ["ok"] * 4
    assert sorted(results[4:]) == ["ok", "refused"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberMerge)) == 2
        assert _account(ids["a"])[0] == 200 and _account(ids["b"])[0] == 0
        balances = sorted((_account(ids["c"])[0], _account(ids["d"])[0]))
        assert balances == [0, 200]
        entries = db.session.scalar(
            sa.select(sa.func.count()).where(PointEntry.reason_code == "merge_in", PointEntry.member_id == ids["a"])
        )
        assert entries == 1


def test_a_merge_request_naming_ids_beyond_bigint_is_a_422_not_a_500(app_ctx, client):
    """Found by the contract fuzzer: an id PostgreSQL cannot hold reached the query (bigint out of range)."""
    survivor = factories.member()
    _agent, agent_token = factories.operator("agent")
    for body in (
        {"survivor_id": survivor.id, "merged_ids": [5927440619472638814202773133181583360]},
        {"survivor_id": 2**63, "merged_ids": [survivor.id]},
    ):
        response = client.post(
            "/api/v1/cs/merges",
            json=body | {"request_id": "req-00002", "reason": "同一客户"},
            headers=_auth(agent_token),
        )
        assert response.status_code == 422, response.json
