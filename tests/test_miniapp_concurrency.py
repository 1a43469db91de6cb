"""Mini-app races on PostgreSQL: double logins, double registrations, two members, one car."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.core.db import db
from app.members.models import Member, WechatIdentity
from app.members.vehicle_claims import VehicleClaim
from app.wechat import clients
from tests import factories
from tests.conftest import run_concurrently
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.fixture
def wechat(app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(http_mock)


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


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
    minis = []
    for i in range(2):
        mini = MiniClient(app.test_client(), wechat)
        mini.sign_in(f"o-shared-{i}")
        minis.append(mini)

    def join(i):
        return (
            minis[i]
            .post("/api/v1/me/registration", json={"policy_version": "2026.1", "phone_code": "phone-shared"})
            .status_code
        )

    assert sorted(run_concurrently(2, join)) == [201, 409]
    assert count(app, Member) == 1


def test_two_members_racing_for_one_car_get_one_claim_and_one_clear_refusal(app, wechat):
    with app.app_context():
        vin = factories.vin()
        db.session.commit()
    minis = []
    for i in range(2):
        mini = MiniClient(app.test_client(), wechat)
        mini.sign_in(f"o-racer-{i}")
        assert mini.register(f"1391234222{i}").status_code == 201
        minis.append(mini)

    results = run_concurrently(2, lambda i: minis[i].post("/api/v1/me/vehicles", json={"vin": vin}))
    assert sorted(r.status_code for r in results) == [202, 409]
    refusal = next(r for r in results if r.status_code == 409)
    assert refusal.json["error"]["message"] == "这辆车正在为其他会员核验，请联系您的经销商。"
    assert count(app, VehicleClaim, VehicleClaim.status == "pending") == 1
