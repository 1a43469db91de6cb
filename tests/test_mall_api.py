"""The mall through its APIs: the mini-app catalog, redemptions, vouchers and activities; staff
scanning a voucher; HQ items, flash offers, partner code batches, fulfilment, alerts and reports."""

from __future__ import annotations

import datetime as dt

import flask_babel
import pytest
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.mall import catalog
from app.mall.models import CodeBatch, PartnerCode, RedemptionOrder
from app.members import services
from app.members.models import WechatIdentity
from app.points import queries
from app.wechat import clients
from tests import factories
from tests.benefit_helpers import give_points
from tests.mall_helpers import item
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


@pytest.fixture
def mini(client, wechat, app_ctx):
    mini = MiniClient(client, wechat)
    mini.sign_in("o-mall-1")
    assert mini.register("13955557001").status_code == 201
    return mini


@pytest.fixture
def member(mini):
    row = services.find_by_phone("13955557001")
    give_points(row, 500)  # with the 500-point welcome gift: 1,000
    return row


@pytest.fixture
def hq(client, app_ctx):
    _op, token = factories.operator("operator")
    return {"Authorization": f"Bearer {token}"}


def test_the_catalog_shows_prices_limits_and_what_i_can_afford(mini, member):
    item("coupon", points=400, code="cheap", per_month_limit=2)
    item("physical", points=1500, code="dear")
    item("coupon", points=100, code="gold1", eligible_tiers=["gold"])
    every = {o["code"]: o for o in mini.get("/api/v1/mall/items").json}
    assert set(every) == {"cheap", "dear"}  # the gold item is not for my tier
    assert every["cheap"]["redeemable"] and every["cheap"]["affordable_units"] == 2
    assert every["dear"]["reason"] == "not_enough_points" and every["cheap"]["name"] == "商品coupon"
    affordable = mini.get("/api/v1/mall/items?affordable=true").json
    assert [o["code"] for o in affordable] == ["cheap"]
    detail = mini.get("/api/v1/mall/items/cheap").json
    assert detail["limits_left"] == {"per_order": None, "this_month": 2, "lifetime": None}
    assert mini.get("/api/v1/mall/items/gold1").status_code == 404


def test_redeeming_through_the_api_shows_the_voucher_qr_and_a_resend_is_the_same_order(mini, member):
    item("coupon", points=400, code="labour")
    body = {"item": "labour", "quantity": 1, "request_id": "tap-000001"}
    made = mini.post("/api/v1/me/redemptions", json=body)
    assert made.status_code == 201, made.json
    voucher = made.json["vouchers"][0]
    assert made.json["status"] == "fulfilled" and voucher["qr_url"] == f"/api/v1/me/vouchers/{voucher['id']}/qr.png"
    png = mini.get(voucher["qr_url"])
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    again = mini.post("/api/v1/me/redemptions", json=body)
    assert again.status_code == 201 and again.json["id"] == made.json["id"]
    assert queries.balance(member.id).available == 600
    mine = mini.get("/api/v1/me/vouchers").json
    assert [v["id"] for v in mine] == [voucher["id"]] and mine[0]["code"] == voucher["code"]
    assert mini.get(f"/api/v1/me/vouchers/{voucher['id']}").json["status"] == "issued"
    assert [o["id"] for o in mini.get("/api/v1/me/redemptions").json] == [made.json["id"]]


def test_refusals_are_clear_and_leave_nothing_behind(mini, member):
    item("physical", points=2000, code="tv")
    item("physical", points=100, code="pen")
    poor = mini.post("/api/v1/me/redemptions", json={"item": "tv", "request_id": "tap-000002", "address": "x 路"})
    assert poor.status_code == 409 and poor.json["error"]["code"] == "insufficient_points"
    no_address = mini.post("/api/v1/me/redemptions", json={"item": "pen", "request_id": "tap-000003"})
    assert no_address.status_code == 422 and no_address.json["error"]["fields"]["address"] == ["请填写收货地址。"]
    bad = mini.post("/api/v1/me/redemptions", json={"item": "pen", "quantity": 0, "request_id": "x"})
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"quantity", "request_id"}
    member.locale = "en"  # the member's own language wins over the phone's
    db.session.flush()
    flask_babel.refresh()  # the requests share the test's app context, where the locale is cached
    english = mini.post("/api/v1/me/redemptions", json={"item": "nosuch", "request_id": "tap-000004"})
    assert english.status_code == 422 and english.json["error"]["fields"]["item"] == ["Unknown item."]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RedemptionOrder)) == 0
    assert catalog.item_by_code("tv").stock == 50


def test_a_cancelled_physical_order_returns_points_and_stock(mini, member):
    item("physical", points=300, stock=4, code="cup")
    made = mini.post("/api/v1/me/redemptions", json={"item": "cup", "request_id": "tap-000005", "address": "杭州 1 号"})
    assert made.status_code == 201 and made.json["status"] == "created"
    cancelled = mini.post(f"/api/v1/me/redemptions/{made.json['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert queries.balance(member.id).available == 1000 and catalog.item_by_code("cup").stock == 4
    assert mini.post(f"/api/v1/me/redemptions/{made.json['id']}/cancel").status_code == 409


def test_staff_scan_a_voucher_once(mini, member, client, wechat):
    item("service_voucher", points=200, code="wash")
    made = mini.post("/api/v1/me/redemptions", json={"item": "wash", "request_id": "tap-000006"}).json
    code = made["vouchers"][0]["code"]
    from app.members.staff_mode import bind, issue_invite

    staff = MiniClient(client, wechat)
    staff.sign_in("o-advisor-mall")
    advisor = factories.staff(factories.dealer(code="D0810"), code="SA0810", role="service_advisor")
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == "o-advisor-mall"))
    bind(identity, issue_invite(advisor, actor="test")[0])
    first = staff.post("/api/v1/staff/vouchers/scans", json={"code": code})
    assert first.status_code == 200 and first.json["status"] == "used"
    second = staff.post("/api/v1/staff/vouchers/scans", json={"code": code})
    assert second.status_code == 409 and second.json["error"]["code"] == "voucher_used"
    assert mini.post("/api/v1/staff/vouchers/scans", json={"code": code}).status_code == 403  # not staff
    assert mini.get("/api/v1/me/redemptions").json[0]["status"] == "completed"
    assert mini.get(f"/api/v1/me/vouchers/{made['vouchers'][0]['id']}/qr.png").status_code == 409  # used: no QR


def test_daily_sign_in_counts_once_a_day_and_shows_the_streak(mini, member, time_machine):
    first = mini.post("/api/v1/me/sign-ins").json
    assert first["new"] and first["points"] == 5 and first["streak"] == 1
    again = mini.post("/api/v1/me/sign-ins").json
    assert not again["new"] and again["streak"] == 1 and again["points"] == 5
    time_machine.move_to(utcnow() + dt.timedelta(days=1))
    mini.sign_in("o-mall-1")  # the mini-app session lasts 2 hours
    assert mini.get("/api/v1/me/sign-ins").json == {
        "day": (business_today()).isoformat(),
        "signed_in_today": False,
        "new": False,
        "points": 0,
        "streak": 1,
    }
    assert mini.post("/api/v1/me/sign-ins").json["streak"] == 2
    time_machine.move_to(utcnow() + dt.timedelta(days=2))
    mini.sign_in("o-mall-1")
    assert mini.post("/api/v1/me/sign-ins").json["streak"] == 1  # a missed day starts over
    assert queries.balance(member.id).available == 1015


def test_a_survey_earns_once(mini, member):
    first = mini.post("/api/v1/me/activities", json={"activity": "survey", "ref": "nps-2026-12"})
    assert first.status_code == 200
    again = mini.post("/api/v1/me/activities", json={"activity": "survey", "ref": "nps-2026-12"})
    assert again.json["points"] == 0
    assert queries.balance(member.id).available == 1000 + first.json["points"]
    assert mini.post("/api/v1/me/activities", json={"activity": "lottery", "ref": "x"}).status_code == 422


def test_recommendations_come_with_a_reason(mini, member):
    item("coupon", points=300, code="rec")
    picks = mini.get("/api/v1/mall/recommendations").json
    assert picks[0]["item"]["code"] == "rec" and picks[0]["message"]


# --- back office ---------------------------------------------------------------------------------


def test_hq_creates_an_item_restocks_and_adds_a_flash_offer(client, hq, app_ctx):
    body = {
        "code": "oil_change",
        "kind": "service_voucher",
        "name": {"zh_CN": "机油保养券", "en": "Oil change voucher"},
        "points_price": 2000,
        "stock": 10,
        "per_month_limit": 1,
        "eligible_tiers": ["gold", "platinum"],
    }
    made = client.post("/api/v1/program/mall/items", json=body, headers=hq)
    assert made.status_code == 201, made.json
    assert client.post("/api/v1/program/mall/items", json=body, headers=hq).status_code == 422
    bad = client.post(
        "/api/v1/program/mall/items", json=body | {"code": "x2", "kind": "car", "points_price": 0}, headers=hq
    )
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"kind", "points_price"}
    restocked = client.post("/api/v1/program/mall/items/oil_change/stock", json={"units": 5}, headers=hq)
    assert restocked.json["stock"] == 15
    start = utcnow().replace(microsecond=0)
    flash = client.post(
        "/api/v1/program/mall/items/oil_change/flash-offers",
        json={
            "points_price": 1000,
            "quantity": 3,
            "starts_at": start.isoformat(),
            "ends_at": (start + dt.timedelta(hours=2)).isoformat(),
        },
        headers=hq,
    )
    assert flash.status_code == 201 and flash.json["sold"] == 0
    changed = client.patch("/api/v1/program/mall/items/oil_change", json={"active": False}, headers=hq)
    assert changed.json["active"] is False
    _agent, agent_token = factories.operator("agent")
    assert (
        client.get("/api/v1/program/mall/items", headers={"Authorization": f"Bearer {agent_token}"}).status_code == 403
    )


def test_partner_codes_upload_with_progress_and_per_row_errors(client, hq, app_ctx):
    item("partner_voucher", points=100, stock=0, code="coffee")
    csv_text = (
        "code,expires_on\nCOFFEE-0001,2027-06-30\n,\nbad code!,\nCOFFEE-0002,2027-13-01\nCOFFEE-0001,\nCOFFEE-0003,\n"
        "COFFEE-0004,9999-12-31\nCOFFEE-0005,0001-01-01\n"  # were a failed job (overflow)
    )
    uploaded = client.post("/api/v1/program/mall/items/coffee/code-batches", json={"csv": csv_text}, headers=hq)
    assert uploaded.status_code == 202 and uploaded.json["total_rows"] == 8
    batch = client.get(f"/api/v1/program/mall/code-batches/{uploaded.json['id']}", headers=hq).json
    assert batch["status"] == "done" and batch["progress_percent"] == 100 and batch["accepted"] == 2
    assert [(e["line"], e["error"]) for e in batch["errors"]] == [
        (3, "empty code"),
        (4, "malformed code"),
        (5, "bad expires_on (YYYY-MM-DD)"),
        (6, "duplicate code"),
        (8, "bad expires_on (YYYY-MM-DD)"),
        (9, "bad expires_on (YYYY-MM-DD)"),
    ]
    assert catalog.item_by_code("coffee").stock == 2
    assert db.session.get(CodeBatch, batch["id"]).payload is None  # the codes live encrypted in their rows
    member = factories.member()
    give_points(member, 1000)
    from app.mall import ordering

    order = ordering.redeem(member, item_code="coffee", quantity=1, request_id="coffee-001").order
    assert order.vouchers[0].code == "COFFEE-0001" and order.status == "fulfilled"
    taken = db.session.scalar(sa.select(PartnerCode).where(PartnerCode.order_id == order.id))
    assert taken is not None
    wrong = client.post("/api/v1/program/mall/items/coffee/code-batches", json={"csv": "voucher\nX1\n"}, headers=hq)
    assert wrong.status_code == 422 and "csv" in wrong.json["error"]["fields"]


def test_fulfilment_lists_addresses_audited_ships_and_completes(client, hq, app_ctx):
    item("physical", points=100, code="scarf")
    member = factories.member()
    give_points(member, 1000)
    from app.mall import ordering

    order = ordering.redeem(member, item_code="scarf", quantity=1, request_id="scarf-001", address="成都 5 号").order
    waiting = client.get("/api/v1/cs/mall/orders", headers=hq).json
    assert [(o["id"], o["address"]) for o in waiting] == [(order.id, "成都 5 号")]
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEntry.action == "mall.addresses_read")) == 1
    shipped = client.post(f"/api/v1/cs/mall/orders/{order.id}/ship", json={"tracking_number": "SF100"}, headers=hq)
    assert shipped.json["status"] == "fulfilled" and shipped.json["tracking_number"] == "SF100"
    assert (
        client.post(f"/api/v1/cs/mall/orders/{order.id}/cancel", json={"reason": "late"}, headers=hq).status_code == 409
    )
    assert client.post(f"/api/v1/cs/mall/orders/{order.id}/complete", headers=hq).json["status"] == "completed"


def test_stock_alerts_and_the_monthly_report_with_csv(client, hq, app_ctx):
    item("coupon", points=500, stock=3, code="low", low_stock_threshold=5, cost_fen=8000)
    item("coupon", points=100, stock=100, code="plenty")
    member = factories.member()
    give_points(member, 5000)
    from app.mall import ordering

    ordering.redeem(member, item_code="low", quantity=2, request_id="low-00001")
    alerts = client.get("/api/v1/program/mall/stock-alerts", headers=hq).json
    assert [(a["item"], a["stock"], a["redeemed_last_7_days"]) for a in alerts] == [("low", 1, 2)]
    month = f"{business_today():%Y-%m}"
    lines = client.get(f"/api/v1/program/mall/report?month={month}", headers=hq).json
    assert lines == [
        {
            "item": "low",
            "name": "商品coupon",
            "kind": "coupon",
            "orders": 1,
            "units": 2,
            "points": 1000,
            "points_value_fen": 20000,
            "cost_fen": 16000,
        }
    ]
    csv_body = client.get(f"/api/v1/program/mall/report.csv?month={month}", headers=hq)
    assert csv_body.mimetype == "text/csv"
    assert csv_body.text.splitlines()[1] == f"{month},low,商品coupon,coupon,1,2,1000,200.00,160.00"
    assert client.get("/api/v1/program/mall/report?month=2026-13", headers=hq).status_code == 422
