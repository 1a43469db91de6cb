"""The customer-service console with the test client: sign-in and sessions, CSRF, look-ups scoped
to the dealer, masked data and audited reveals, adjustments with a second approver, freezing,
complaints and their top-10 report."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.benefits.models import Benefit, Booking
from app.care import callbacks
from app.care.models import Notification
from app.complaints.models import Complaint
from app.core.clock import utcnow
from app.core.db import db
from app.core.models import AuditEntry
from app.crm.models import CrmMemberSync, CrmOutboxEntry
from app.mall.models import RedemptionOrder, Voucher
from app.members import services
from app.members.identifiers import new_member_number
from app.members.models import Member, WechatIdentity
from app.points import ledger, queries
from app.points.models import AdjustmentRequest, PointLot
from app.referrals.models import Referral
from tests import factories
from tests.benefit_helpers import seed_catalog, slot
from tests.console_helpers import csrf_token, post_form, sign_in
from tests.mall_helpers import item

PHONE = "13800000088"


@pytest.fixture
def dealer(app_ctx):
    return factories.dealer(code="D0101")


@pytest.fixture
def member(dealer):
    row = factories.member(status="active", enrolling_dealer_id=dealer.id, phone=PHONE, name="张伟")
    factories.vehicle(owner=row, selling_dealer_id=dealer.id, plate="吉A12345")
    return row


@pytest.fixture
def agent(app_ctx):
    return factories.operator("agent")[0]


@pytest.fixture
def supervisor(app_ctx):
    return factories.operator("supervisor")[0]


def _audit(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _status(member: Member) -> str:
    """The member's status as committed by the requests (this test's session caches the row)."""
    db.session.expire_all()
    return db.session.get(Member, member.id).status


def _text(response) -> str:
    return response.get_data(as_text=True)


# --- sign-in, sessions, CSRF ---------------------------------------------------------------------


def test_signing_in_opens_the_console_and_a_wrong_password_is_refused_and_audited(client, agent):
    assert client.get("/console/").status_code == 302
    token = csrf_token(client)
    wrong = client.post("/console/sign-in", data={"username": agent.username, "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    assert "用户名或密码错误" in _text(wrong) or "Wrong username or password" in _text(wrong)
    assert [row.subject_id for row in _audit("operator.sign_in_failed")] == [agent.username]
    sign_in(client, agent.username)
    home = client.get("/console/")
    assert home.status_code == 200
    assert agent.name in _text(home)
    assert [row.subject_id for row in _audit("operator.signed_in")] == [agent.username]


def test_the_sign_in_throttle_of_the_back_office_locks_the_console_too(client, agent):
    for _ in range(5):
        token = csrf_token(client)
        failed = client.post(
            "/console/sign-in", data={"username": agent.username, "password": "bad", "csrf_token": token}
        )
        assert failed.status_code in (401, 429)
    token = csrf_token(client)
    locked = client.post(
        "/console/sign-in", data={"username": agent.username, "password": "correct horse", "csrf_token": token}
    )
    assert locked.status_code == 429
    assert client.get("/console/").status_code == 302


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(client, agent, member):
    sign_in(client, agent.username)
    refused = client.post(f"/console/members/{member.member_no}/freeze", data={"reason": "fraud check"})
    assert refused.status_code == 400
    forged = client.post(
        f"/console/members/{member.member_no}/freeze", data={"reason": "fraud check", "csrf_token": "forged"}
    )
    assert forged.status_code == 400
    assert _status(member) == "active"
    assert _audit("member.frozen") == []


def test_sign_out_ends_the_session_and_the_operators_tokens(client, agent):
    sign_in(client, agent.username)
    signed_out = post_form(client, "/console/sign-out", {})
    assert signed_out.status_code == 302
    assert client.get("/console/").status_code == 302
    assert [row.subject_id for row in _audit("operator.signed_out")] == [agent.username]


def test_an_idle_session_ends(client, agent):
    sign_in(client, agent.username)
    with client.session_transaction() as session:
        session["seen"] -= 31 * 60
    idle = client.get("/console/")
    assert idle.status_code == 302
    assert "why=idle" in idle.headers["Location"]
    assert client.get("/console/").status_code == 302  # the token is gone from the session too


def test_the_next_page_after_sign_in_stays_in_the_console(client, agent):
    token = csrf_token(client)
    response = client.post(
        "/console/sign-in",
        data={"username": agent.username, "password": "correct horse", "csrf_token": token, "next": "//evil.example/"},
    )
    assert response.headers["Location"] == "/console/"


# --- look-up ---------------------------------------------------------------------------------------


def test_look_up_by_phone_opens_the_member_masked(client, agent, member):
    sign_in(client, agent.username)
    found = client.get(f"/console/?kind=phone&q={PHONE}")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/console/members/{member.member_no}")
    page = client.get(found.headers["Location"])
    assert page.status_code == 200
    assert "138****0088" in _text(page) and "张*" in _text(page)
    assert PHONE not in _text(page) and "张伟" not in _text(page)
    assert [(r.action, r.subject_id) for r in _audit("member.lookup")] == [("member.lookup", str(member.id))]
    assert [r.reason for r in _audit("member.read")] == ["console: member 360 (profile)"]


@pytest.mark.parametrize("kind", ["member_no", "vin", "plate", "openid"])
def test_look_up_by_every_identifier(client, agent, member, kind):
    identity = WechatIdentity(member_id=member.id, app_kind="official", app_id="wx1", openid="o-console-1")
    db.session.add(identity)
    db.session.flush()
    query = {
        "member_no": member.member_no,
        "vin": member.current_vehicles[0].vin,
        "plate": "吉A 12345",
        "openid": "o-console-1",
    }[kind]
    sign_in(client, agent.username)
    found = client.get("/console/", query_string={"kind": kind, "q": query})
    assert found.status_code == 302 and found.headers["Location"].endswith(member.member_no)
    assert _audit("member.lookup")[0].details == {"by": kind}


def test_a_miss_is_audited_without_the_query(client, agent):
    sign_in(client, agent.username)
    missed = client.get("/console/?kind=phone&q=13800009999")
    assert missed.status_code == 200 and 'data-testid="no-results"' in _text(missed)
    rows = _audit("member.lookup")
    assert [(r.subject_id, r.details) for r in rows] == [("-", {"by": "phone", "miss": True})]
    assert "13800009999" not in str(rows[0].details) + str(rows[0].reason)


def test_bad_look_up_input_is_a_422_with_a_localized_field_message(client, agent):
    sign_in(client, agent.username)
    chinese = client.get("/console/?kind=phone&q=12345")
    assert chinese.status_code == 422 and "请输入 11 位中国大陆手机号" in _text(chinese)
    english = client.get("/console/?kind=vin&q=ABC&lang=en")
    assert english.status_code == 422 and "A VIN has 17 characters." in _text(english)
    unknown = client.get("/console/?kind=name&q=张伟")
    assert unknown.status_code == 422


@pytest.mark.parametrize(
    ("path", "data", "status"),
    [
        ("/console/?kind=openid&q=o%00x", None, 422),
        ("/console/?kind=plate&q=" + "吉" * 5000, None, 422),
        ("/console/?kind=phone&q=" + "1" * 5000, None, 422),
        ("/console/members/{no}?tab=%00", None, 422),
        ("/console/members/{no}?tab=ledger&page=99999999999999999999", None, 200),
        ("/console/members/{no}/complaints", {"category": "tier", "status": "open", "description": "a\x00b"}, 422),
        ("/console/members/{no}/adjustments", {"points": "9" * 40, "reason_code": "goodwill", "note": "x"}, 422),
        ("/console/members/{no}/reveal", {"reason_code": "caller_verification", "note": "n" * 5000}, 422),
        ("/console/members/{no}/freeze", {"reason": "r" * 5000}, 422),
    ],
)
def test_hostile_input_is_a_clear_refusal_never_a_500(client, agent, member, path, data, status):
    sign_in(client, agent.username)
    path = path.format(no=member.member_no)
    response = client.get(path) if data is None else post_form(client, path, data)
    assert response.status_code == status


def test_a_dealer_manager_finds_only_their_dealers_members(client, dealer, member):
    services.record_consent(member, policy_version="2026.1", granted=["dealer_sharing"], channel="miniapp")
    own, _ = factories.operator("dealer_manager", dealer_id=dealer.id)
    other, _ = factories.operator("dealer_manager", dealer_id=factories.dealer(code="D0999").id)
    sign_in(client, own.username)
    assert client.get(f"/console/?kind=phone&q={PHONE}").status_code == 302
    other_client = client.application.test_client()
    sign_in(other_client, other.username)
    refused = other_client.get(f"/console/?kind=phone&q={PHONE}")
    assert refused.status_code == 200 and 'data-testid="no-results"' in _text(refused)
    page = other_client.get(f"/console/members/{member.member_no}")
    missing = other_client.get(f"/console/members/{new_member_number()}")
    assert page.status_code == missing.status_code == 404
    refusals = [r for r in _audit("member.lookup") if r.details.get("refused")]
    assert [r.actor_id for r in refusals] == [other.actor]


# --- reveal ------------------------------------------------------------------------------------------


def test_reveal_needs_a_reason_and_is_audited(client, agent, member):
    sign_in(client, agent.username)
    page = f"/console/members/{member.member_no}"
    missing = post_form(client, f"{page}/reveal", {"reason_code": "", "note": ""}, from_page=page)
    assert missing.status_code == 422
    assert PHONE not in _text(missing)
    shown = post_form(
        client, f"{page}/reveal", {"reason_code": "caller_verification", "note": "caller asked"}, from_page=page
    )
    assert shown.status_code == 200
    assert PHONE in _text(shown) and "张伟" in _text(shown)
    assert [r.reason for r in _audit("member.revealed")] == ["caller_verification: caller asked"]
    again = client.get(page)
    assert PHONE not in _text(again)  # for that page only
    trail = client.get(f"{page}?tab=audit")
    assert "caller_verification: caller asked" in _text(trail)


def test_a_dealer_without_the_profile_relationship_sees_no_name_and_cannot_reveal(client, dealer, member):
    manager, _ = factories.operator("dealer_manager", dealer_id=dealer.id)  # sold the car; no dealer_sharing
    sign_in(client, manager.username)
    page = f"/console/members/{member.member_no}"
    assert client.get(page).status_code == 200
    assert "张*" not in _text(client.get(page))
    refused = post_form(client, f"{page}/reveal", {"reason_code": "caller_verification", "note": "x"}, from_page=page)
    assert refused.status_code == 404
    assert PHONE not in _text(refused)
    assert _audit("member.revealed")[0].details == {"refused": True}


# --- member 360 tabs --------------------------------------------------------------------------------


def test_every_tab_of_the_member_360_renders(client, agent, member):
    ledger.earn(
        ledger.Earning(member_id=member.id, currency="reward", points=300, idempotency_key="t-1", source_type="test")
    )
    sign_in(client, agent.username)
    for tab in ("profile", "wechat", "vehicles", "tier", "ledger", "complaints", "audit"):
        page = client.get(f"/console/members/{member.member_no}?tab={tab}")
        assert page.status_code == 200, tab
        assert f'data-testid="tab-{tab}"' in _text(page)
    ledger_page = _text(client.get(f"/console/members/{member.member_no}?tab=ledger"))
    assert 'data-testid="available">300<' in ledger_page
    vehicles = _text(client.get(f"/console/members/{member.member_no}?tab=vehicles"))
    vin = member.current_vehicles[0].vin
    assert vin not in vehicles and vin[-6:] in vehicles and "吉A***45" in vehicles


def test_the_packages_tabs_show_the_members_rows(client, agent, member, dealer):
    seed_catalog()
    benefit = db.session.scalars(sa.select(Benefit).order_by(Benefit.id)).first()
    booked_slot = slot(dealer)
    db.session.add(
        Booking(
            member_id=member.id,
            request_id="tabs-b1",
            benefit_id=benefit.id,
            benefit_code=benefit.code,
            slot_id=booked_slot.id,
            dealer_id=dealer.id,
            paid_with="quota",
            year_start=dt.date(2026, 1, 1),
            status="delivered",
            rating=4,
        )
    )
    db.session.add(
        Notification(
            member_id=member.id,
            kind="tier_upgrade",
            channel="official_template",
            dedupe_key="tabs-1",
            status="delivered",
            delivery_status="success",
            payload={},
            sent_at=utcnow(),
        )
    )
    mall_item = item("physical")
    order = RedemptionOrder(
        member_id=member.id,
        request_id="tabs-o1",
        item_id=mall_item.id,
        quantity=2,
        unit_points=400,
        points_spent=800,
        status="fulfilled",
        address="吉林省长春市绿园区东风大街1号",
    )
    db.session.add(order)
    db.session.flush()
    for n in range(2):
        db.session.add(
            Voucher(
                order_id=order.id,
                member_id=member.id,
                code=f"TABS{n}",
                code_hash=f"tabs-hash-{n}",
                expires_at=utcnow() + dt.timedelta(days=30),
            )
        )
    referee = factories.member(phone="13911112222", name="李雷")
    db.session.add(
        Referral(
            referrer_member_id=member.id,
            referee_member_id=referee.id,
            code="TABSREF",
            dealer_id=dealer.id,
            milestone="test_drive",
            reward_status="credited",
            reward_points=200,
            attributed_at=utcnow(),
            expires_at=utcnow() + dt.timedelta(days=90),
        )
    )
    synced_at = dt.datetime(2026, 11, 30, 2, 5, tzinfo=dt.UTC)
    db.session.execute(sa.delete(CrmOutboxEntry).where(CrmOutboxEntry.member_id == member.id))
    db.session.merge(CrmMemberSync(member_id=member.id, last_seq=9, last_delivered_at=synced_at))
    for seq, status in ((10, "pending"), (11, "pending"), (12, "dead")):
        db.session.add(
            CrmOutboxEntry(member_id=member.id, seq=seq, kind="member", idempotency_key=f"tabs-{seq}", status=status)
        )
    callbacks.open_task(member.id, "churn_risk", "2026-12")
    db.session.commit()
    sign_in(client, agent.username)
    notifications = _text(client.get(f"/console/members/{member.member_no}?tab=notifications"))
    assert 'data-testid="tab-notifications"' in notifications
    assert "等级升级" in notifications and "服务号模板消息" in notifications and "success" in notifications
    assert "tier_upgrade" not in notifications  # the kind's label, not its code
    tasks = _text(client.get(f"/console/members/{member.member_no}?tab=callbacks"))
    assert 'data-testid="tab-callbacks"' in tasks and "churn_risk" in tasks
    bookings = _text(client.get(f"/console/members/{member.member_no}?tab=bookings"))
    assert 'data-testid="tab-bookings"' in bookings and benefit.name["zh_CN"] in bookings
    assert dealer.name in bookings and "delivered" in bookings and "quota" in bookings
    assert 'data-tab="bookings">预约<' in bookings and 'data-tab="crm">CRM 同步<' in bookings  # labels translated
    redemptions = _text(client.get(f"/console/members/{member.member_no}?tab=redemptions"))
    assert 'data-testid="tab-redemptions"' in redemptions and mall_item.name["zh_CN"] in redemptions
    assert "800" in redemptions and "issued × 2" in redemptions
    assert "吉林省长春市****" in redemptions and "东风大街" not in redemptions
    referrals = _text(client.get(f"/console/members/{member.member_no}?tab=referrals"))
    assert 'data-testid="tab-referrals"' in referrals and "test_drive" in referrals and "credited" in referrals
    assert "139****2222" in referrals and "李*" in referrals and "13911112222" not in referrals
    crm = _text(client.get(f"/console/members/{member.member_no}?tab=crm"))
    assert 'data-testid="crm-last-delivered">2026-11-30 10:05<' in crm
    assert 'data-testid="crm-pending">2<' in crm and 'data-testid="crm-dead">1<' in crm


def test_the_notifications_tab_pages_newest_first(client, agent, member):
    start = utcnow() - dt.timedelta(days=30)
    for n in range(21):
        db.session.add(
            Notification(
                member_id=member.id,
                kind=f"kind_{n:02d}",
                channel="sms",
                dedupe_key=f"tabs-page-{n}",
                payload={},
                created_at=start + dt.timedelta(hours=n),
            )
        )
    db.session.commit()
    sign_in(client, agent.username)
    first = _text(client.get(f"/console/members/{member.member_no}?tab=notifications"))
    second = _text(client.get(f"/console/members/{member.member_no}?tab=notifications&page=2"))
    assert "kind_20" in first and "kind_01" in first and "kind_00" not in first and "1 / 2" in first
    assert "kind_00" in second and "kind_20" not in second


def test_a_dealer_manager_sees_no_callback_tasks_or_crm_tab(client, dealer, member):
    manager, _ = factories.operator("dealer_manager", dealer_id=dealer.id)
    sign_in(client, manager.username)
    page = _text(client.get(f"/console/members/{member.member_no}?tab=callbacks"))
    assert 'data-tab="callbacks"' not in page and 'data-testid="callback-tasks"' not in page
    assert 'data-tab="crm"' not in page and 'data-testid="crm-sync"' not in _text(
        client.get(f"/console/members/{member.member_no}?tab=crm")
    )
    assert 'data-testid="tab-profile"' in page and 'data-tab="notifications"' in page


def test_a_dealer_manager_has_no_adjustment_or_freeze_forms(client, dealer, member):
    manager, _ = factories.operator("dealer_manager", dealer_id=dealer.id)
    sign_in(client, manager.username)
    page = _text(client.get(f"/console/members/{member.member_no}?tab=ledger"))
    assert "/adjustments" not in page
    refused = post_form(
        client,
        f"/console/members/{member.member_no}/adjustments",
        {"points": "10", "reason_code": "goodwill", "note": "x"},
    )
    assert refused.status_code == 403


# --- adjustments ------------------------------------------------------------------------------------


def test_a_large_adjustment_waits_for_another_supervisor(client, app, agent, supervisor, member):
    sign_in(client, agent.username)
    page = f"/console/members/{member.member_no}"
    requested = post_form(
        client,
        f"{page}/adjustments",
        {"points": "1500", "reason_code": "goodwill", "note": "delayed delivery", "request_id": "req-1"},
        from_page=page,
    )
    assert requested.status_code == 302
    waiting = db.session.scalars(sa.select(AdjustmentRequest)).one()
    assert waiting.status == "pending" and queries.balance(member.id).available == 0
    assert client.get("/console/approvals").status_code == 403  # agents have no queue

    boss = app.test_client()
    sign_in(boss, supervisor.username)
    queue = boss.get("/console/approvals")
    assert member.member_no in _text(queue) and "1500" in _text(queue)
    approved = post_form(
        boss, f"/console/approvals/{waiting.id}", {"decision": "approve"}, from_page="/console/approvals"
    )
    assert approved.status_code == 302
    db.session.refresh(waiting)
    assert waiting.status == "applied" and waiting.decided_by == supervisor.actor
    assert queries.balance(member.id).available == 1500
    assert [r.action for r in _audit("points.adjustment_approved")] == ["points.adjustment_approved"]


def test_a_supervisor_cannot_approve_their_own_request(client, supervisor, member):
    sign_in(client, supervisor.username)
    page = f"/console/members/{member.member_no}"
    post_form(
        client,
        f"{page}/adjustments",
        {"points": "-1200", "reason_code": "fraud_correction", "note": "duplicate", "request_id": "req-2"},
        from_page=page,
    )
    waiting = db.session.scalars(sa.select(AdjustmentRequest)).one()
    refused = post_form(
        client, f"/console/approvals/{waiting.id}", {"decision": "approve"}, from_page="/console/approvals"
    )
    assert refused.status_code == 403
    assert "审批人不能是申请人" in _text(refused) or "someone other than the requester" in _text(refused)


def test_a_small_adjustment_applies_at_once_and_bad_points_are_a_field_error(client, agent, member):
    sign_in(client, agent.username)
    page = f"/console/members/{member.member_no}"
    bad = post_form(
        client, f"{page}/adjustments", {"points": "lots", "reason_code": "goodwill", "note": "x"}, from_page=page
    )
    assert bad.status_code == 422 and 'data-field="points"' in _text(bad)
    ok = post_form(
        client, f"{page}/adjustments", {"points": "200", "reason_code": "goodwill", "note": "sorry"}, from_page=page
    )
    assert ok.status_code == 302
    assert queries.balance(member.id).available == 200


# --- freeze ------------------------------------------------------------------------------------------


def test_freezing_holds_new_points_and_unfreezing_releases_them(client, agent, member, dealer):
    sign_in(client, agent.username)
    page = f"/console/members/{member.member_no}"
    assert post_form(client, f"{page}/freeze", {"reason": ""}, from_page=page).status_code == 422
    assert post_form(client, f"{page}/freeze", {"reason": "stolen phone"}, from_page=page).status_code == 302
    assert _status(member) == "frozen"
    again = post_form(client, f"{page}/freeze", {"reason": "again"}, from_page=page)
    assert again.status_code == 409

    from app.points import earning  # the real earning rules, as a DMS service visit would

    earning.award_event(
        db.session.get(Member, member.id),
        "service.completed",
        {"parts_fen": 100_000, "labour_fen": 50_000, "total_fen": 150_000, "service_type": "maintenance"},
        ref="RO-frozen-1",
        occurred_at=utcnow(),
        dealer=dealer,
    )
    held = db.session.scalars(sa.select(PointLot).where(PointLot.member_id == member.id)).all()
    assert held and {lot.status for lot in held if lot.remaining} <= {"held"}
    assert queries.balance(member.id).available == 0

    assert post_form(client, f"{page}/unfreeze", {"reason": "phone recovered"}, from_page=page).status_code == 302
    assert _status(member) == "active"
    lots = db.session.scalars(sa.select(PointLot).where(PointLot.member_id == member.id, PointLot.remaining > 0)).all()
    assert lots and "held" not in {lot.status for lot in lots}  # released (a service lock period still runs)
    assert [r.reason for r in _audit("member.frozen")] == ["stolen phone"]
    assert [r.reason for r in _audit("member.unfrozen")] == ["phone recovered"]


# --- complaints -------------------------------------------------------------------------------------


def test_complaints_are_logged_validated_updated_and_counted(client, agent, supervisor, member):
    sign_in(client, agent.username)
    page = f"/console/members/{member.member_no}"
    invalid = post_form(
        client,
        f"{page}/complaints",
        {"category": "nonsense", "status": "resolved", "description": ""},
        from_page=page,
    )
    assert invalid.status_code == 422
    for field in ("category", "description", "resolution"):
        assert f'data-field="{field}"' in _text(invalid)
    for category in ("points_missing", "points_missing", "tier"):
        logged = post_form(
            client, f"{page}/complaints", {"category": category, "status": "open", "description": "…"}, from_page=page
        )
        assert logged.status_code == 302
    complaint = db.session.scalars(sa.select(Complaint).order_by(Complaint.id)).first()
    updated = post_form(
        client,
        f"{page}/complaints/{complaint.id}",
        {"status": "resolved", "resolution": "credited 200 points"},
        from_page=page,
    )
    assert updated.status_code == 302
    db.session.refresh(complaint)
    assert complaint.status == "resolved" and complaint.resolved_at is not None
    old = Complaint(
        member_id=member.id,
        category="sales",
        status="open",
        description="old",
        created_by="x",
        created_at=utcnow() - dt.timedelta(days=40),
        updated_at=utcnow(),
    )
    db.session.add(old)
    db.session.flush()
    report = _text(client.get("/console/reports/complaints"))
    table = report.split('data-testid="complaint-report"')[1]
    assert table.index("积分未到账") < table.index("等级")  # two of one, then one of the other
    assert "销售" not in table  # the 40-day-old complaint is outside the period
    assert table.count("<tr><td>") == 2
    assert [r.action for r in _audit("complaint.logged")] == ["complaint.logged"] * 3


# --- make run ----------------------------------------------------------------------------------------


def test_make_run_prints_the_console_and_a_demo_account_per_role(app, app_ctx, monkeypatch):
    import werkzeug.serving

    import app.cli as cli_module
    from app import demo
    from app.operators.models import ROLES

    monkeypatch.setattr(cli_module, "start_embedded_scheduler", lambda _app: None)
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda *_a, **_k: None)
    result = app.test_cli_runner().invoke(args=["serve", "--port", "5999"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:5999/console/" in result.output
    assert {role for _user, _name, role, _dealer in demo.DEMO_OPERATORS} == set(ROLES)
    for username, _name, role, _dealer in demo.DEMO_OPERATORS:
        assert f"{role:<15} {username}" in result.output
    console_line = next(line for line in result.output.splitlines() if "Customer-service console" in line)
    assert demo.DEMO_PASSWORD not in console_line  # passwords are printed in development only
    shown = cli_module.console_accounts("http://h", show_passwords=True)
    assert demo.DEMO_PASSWORD in shown
    assert "Operator dashboard: http://h/console/dashboard" in shown


def test_chinese_by_default_english_on_request_and_the_choice_sticks(client, agent, member):
    sign_in(client, agent.username)
    page = f"/console/members/{member.member_no}"
    assert "积分明细" in _text(client.get(f"{page}?tab=ledger"))
    english = _text(client.get(f"{page}?tab=ledger&lang=en"))
    assert "Points ledger" in english and "积分明细" not in english
    assert f'href="{page}?tab=ledger&amp;lang=zh_CN"' in english  # the switch keeps the tab
    assert "Points ledger" in _text(client.get(f"{page}?tab=audit"))
    assert "积分明细" in _text(client.get(f"{page}?lang=zh_CN"))


def test_a_package_adds_a_member_tab_by_registering_it(client, agent, member, dealer, monkeypatch):
    """What bookings, notifications or CRM will do: add a tab, visible to the roles it names."""
    from app.console import registry

    seen = []

    def bookings(context: registry.TabContext) -> dict:
        seen.append((context.operator.username, context.member.id))
        return {"identities": [], "revealed": False}

    monkeypatch.setitem(
        registry._TABS,
        "bookings",
        registry.Tab("bookings", "预约", "console/tabs/wechat.html", bookings, roles=("agent",), order=60),
    )
    sign_in(client, agent.username)
    page = _text(client.get(f"/console/members/{member.member_no}?tab=bookings"))
    assert 'data-tab="bookings"' in page and 'data-testid="tab-bookings"' in page
    assert seen == [(agent.username, member.id)]
    manager, _ = factories.operator("dealer_manager", dealer_id=dealer.id)
    other = client.application.test_client()
    sign_in(other, manager.username)
    assert 'data-tab="bookings"' not in _text(other.get(f"/console/members/{member.member_no}"))
