"""Mini-app races on PostgreSQL: double logins, double registrations, two members, one car."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from app.core.db import db
from app.members import services
from app.members.models import Member, WechatIdentity
from app.members.vehicle_claims import VehicleClaim
from app.wechat import clients
from tests import factories
from tests.conftest import run_concurrently
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def two_minis(app, wechat, openid_prefix: str, phone_prefix: str | None = None) -> list[MiniClient]:
    """Two signed-in mini-app users, each with their own client (and member, given a phone prefix)."""
    minis = []
    for i in range(2):
        mini = MiniClient(app.test_client(), wechat)
        mini.sign_in(f"{openid_prefix}-{i}")
        if phone_prefix is not None:
            assert mini.register(f"{phone_prefix}{i}").status_code == 201
        minis.append(mini)
    return minis


def test_the_same_login_code_twice_at_once_makes_one_identity_and_one_member(app, wechat):
    code = wechat.code("double-tap", "o-double")
    wechat.phone_code("phone-double", "13912340000")

    def log_in_and_join(_i):
        client = app.test_client()
        token = client.post("/api/v1/sessions", json={"code": code}).json["token"]
        return client.post(
            "/api/v1/me/registration",
            headers={"Authorization": f"Bearer {token}"},
            json={"policy_version": "2026.1", "phone_code": "phone-double"},
        ).status_code

    assert run_concurrently(2, log_in_and_join) == [201, 201]
    assert count(app, WechatIdentity) == 1
    assert count(app, Member) == 1


def test_two_wechat_accounts_registering_one_new_phone_at_once_make_one_member(app, wechat):
    wechat.phone_code("phone-shared", "13912341111")
    minis = two_minis(app, wechat, "o-shared")

    def join(i):
        return (
            minis[i]
            .post("/api/v1/me/registration", json={"policy_version": "2026.1", "phone_code": "phone-shared"})
            .status_code
        )

    assert sorted(run_concurrently(2, join)) == [201, 409]
    assert count(app, Member) == 1


def test_members_racing_for_one_car_are_all_answered_alike_and_the_cap_escalates_the_rest(app, wechat):
    """Nobody learns that someone else claimed the car; over the cap of 3 claimants the dealer's
    queue stops growing and the extra claims go to HQ."""
    with app.app_context():
        vin = factories.vin()
        db.session.commit()
    minis = []
    for i in range(5):
        mini = MiniClient(app.test_client(), wechat)
        mini.sign_in(f"o-racer-{i}")
        assert mini.register(f"1391234222{i}").status_code == 201
        minis.append(mini)

    results = run_concurrently(5, lambda i: minis[i].post("/api/v1/me/vehicles", json={"vin": vin}))
    assert [r.status_code for r in results] == [202] * 5
    shapes = {(r.json["outcome"], r.json["vehicle"], tuple(sorted(r.json["claim"]))) for r in results}
    assert len(shapes) == 1  # the same answer for the first claimant and the fifth
    with app.app_context():
        escalated = db.session.scalars(
            sa.select(VehicleClaim.escalated).where(VehicleClaim.status == "pending").order_by(VehicleClaim.id)
        ).all()
    assert sorted(escalated) == [False, False, False, True, True]


def test_one_member_adding_five_cars_at_once_keeps_to_three_open_claims(app, wechat):
    mini = MiniClient(app.test_client(), wechat)
    mini.sign_in("o-greedy")
    assert mini.register("13912345550").status_code == 201
    with app.app_context():
        vins = [factories.vin() for _ in range(5)]

    results = run_concurrently(5, lambda i: mini.post("/api/v1/me/vehicles", json={"vin": vins[i]}))
    assert sorted(r.status_code for r in results) == [202, 202, 202, 409, 409]
    assert count(app, VehicleClaim, VehicleClaim.status == "pending") == 3


def test_a_double_tapped_claim_makes_one_claim(app, wechat):
    mini = MiniClient(app.test_client(), wechat)
    mini.sign_in("o-double-claim")
    assert mini.register("13912345560").status_code == 201
    with app.app_context():
        vin = factories.vin()

    results = run_concurrently(3, lambda _i: mini.post("/api/v1/me/vehicles", json={"vin": vin}))
    assert [r.status_code for r in results] == [202] * 3
    assert len({r.json["claim"]["id"] for r in results}) == 1
    assert count(app, VehicleClaim) == 1


def test_one_token_refreshed_five_times_at_once_gives_one_new_session(app, wechat, monkeypatch):
    from app.members import sessions

    mini = MiniClient(app.test_client(), wechat)
    mini.sign_in("o-refresh-race")
    issue = sessions._new_session

    def slow_issue(*args, **kwargs):  # widen the window so the refreshes overlap
        time.sleep(0.2)
        return issue(*args, **kwargs)

    monkeypatch.setattr(sessions, "_new_session", slow_issue)
    results = run_concurrently(5, lambda _i: mini.post("/api/v1/sessions/refresh"))
    assert sorted(r.status_code for r in results) == [201, 401, 401, 401, 401]
    assert count(app, sessions.MiniappSession, sessions.MiniappSession.revoked_at.is_(None)) == 1


def test_two_members_taking_one_new_number_at_once_get_one_change_and_one_conflict(app, wechat):
    wechat.phone_code("phone-new-number", "13912343333")
    minis = two_minis(app, wechat, "o-phone-race", "1391234444")

    results = run_concurrently(2, lambda i: minis[i].put("/api/v1/me/phone", json={"phone_code": "phone-new-number"}))
    assert sorted(r.status_code for r in results) == [200, 409]
    with app.app_context():
        assert services.find_by_phone("13912343333") is not None
