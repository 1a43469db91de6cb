"""The console's remaining actions with the test client: resending a notification, cancelling a
booking for the member (the cut-off and who may waive it), merge requests and the supervisors'
queue, and the callback-task queue (claim, note, close with an outcome). Each: the happy path and
its audit row, the wrong role (403), another dealer's member (404), no CSRF token (400)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.benefits import booking, catalog, entitlements
from app.benefits.entitlements import Holder
from app.benefits.models import Booking
from app.care import callbacks
from app.care.models import CallbackTask, CallbackTaskNote, Notification
from app.core.clock import utcnow
from app.core.db import db
from app.core.models import AuditEntry
from app.members.models import Member, MemberMerge
from app.points import queries
from tests import factories
from tests.benefit_helpers import give_points, seed_catalog, set_tier, slot
from tests.care_helpers import at_daytime
from tests.console_helpers import post_form, sign_in

PHONE = "13800000177"


@pytest.fixture
def dealer(app_ctx):
    return factories.dealer(code="D0101")


@pytest.fixture
def other_dealer(app_ctx):
    return factories.dealer(code="D0201")


@pytest.fixture
def member(dealer):
    row = factories.member(status="active", enrolling_dealer_id=dealer.id, phone=PHONE, name="张伟")
    factories.vehicle(owner=row, selling_dealer_id=dealer.id)
    return row


@pytest.fixture
def agent(app_ctx):
    return factories.operator("agent")[0]


@pytest.fixture
def supervisor(app_ctx):
    return factories.operator("supervisor")[0]


def _audit(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _text(response) -> str:
    return response.get_data(as_text=True)


def _fresh(model, row_id):
    db.session.expire_all()
    return db.session.get(model, row_id)


def _page(member: Member, tab: str) -> str:
    return f"/console/members/{member.member_no}?tab={tab}"


def _other_dealers_manager(other_dealer):
    return factories.operator("dealer_manager", dealer_id=other_dealer.id)[0]


def _refused_reads(operator, member) -> list[AuditEntry]:
    return [
        row
        for row in _audit("member.read")
        if row.actor_id == operator.actor and row.subject_id == str(member.id) and row.details.get("refused")
    ]


# --- resend a notification -------------------------------------------------------------------------


def _sent_notification(member: Member, key: str = "resend-1") -> Notification:
    row = Notification(
        member_id=member.id,
        kind="tier_upgrade",
        channel="sms",
        dedupe_key=key,
        status="delivered",
        payload={"from_tier": "silver", "to_tier": "gold"},
        sent_at=utcnow(),
    )
    db.session.add(row)
    db.session.flush()
    return row


def _resend_and_check(client, agent, member):
    original = _sent_notification(member)
    sign_in(client, agent.username)
    page = _text(client.get(_page(member, "notifications")))
    assert f'data-notification="{original.id}"' in page and "/resend" in page
    path = f"/console/members/{member.member_no}/notifications/{original.id}/resend"
    done = post_form(client, path, {"reason": "会员说没收到"}, from_page=_page(member, "notifications"))
    assert done.status_code == 302 and done.headers["Location"].endswith("tab=notifications")
    copies = db.session.scalars(sa.select(Notification).where(Notification.dedupe_key.like("resend:%"))).all()
    assert [(c.dedupe_key, c.member_id, c.kind) for c in copies] == [
        (f"resend:{original.id}:1", member.id, "tier_upgrade")
    ]
    db.session.refresh(copies[0])
    assert copies[0].status == "sent", copies[0].status  # the eager job sent it after the commit
    [row] = _audit("notification.resent")
    assert (row.actor_id, row.reason, row.details["member_id"]) == (agent.actor, "会员说没收到", member.id)
    assert "已重新发送" in _text(client.get(done.headers["Location"]))  # the flash, in zh_CN


def test_an_agent_resends_a_notification_with_a_reason_and_it_is_audited(client, agent, member):
    with at_daytime():  # the resend is sent at once (eager jobs): outside quiet hours
        _resend_and_check(client, agent, member)


def test_a_resend_needs_a_reason_and_a_notification_of_this_member(client, agent, member):
    stranger = factories.member()
    theirs = _sent_notification(stranger, "resend-theirs")
    ours = _sent_notification(member, "resend-ours")
    sign_in(client, agent.username)
    base = f"/console/members/{member.member_no}/notifications"
    no_reason = post_form(
        client, f"{base}/{ours.id}/resend", {"reason": "  "}, from_page=_page(member, "notifications")
    )
    assert no_reason.status_code == 422 and 'data-field="reason"' in _text(no_reason)
    not_ours = post_form(
        client, f"{base}/{theirs.id}/resend", {"reason": "x"}, from_page=_page(member, "notifications")
    )
    assert not_ours.status_code == 404
    assert _audit("notification.resent") == []


def test_resending_is_refused_to_a_dealer_manager_and_without_the_csrf_token(client, agent, member, dealer):
    original = _sent_notification(member)
    path = f"/console/members/{member.member_no}/notifications/{original.id}/resend"
    manager = factories.operator("dealer_manager", dealer_id=dealer.id)[0]
    sign_in(client, manager.username)
    assert "/resend" not in _text(client.get(_page(member, "notifications")))
    assert post_form(client, path, {"reason": "x"}, from_page=_page(member, "notifications")).status_code == 403
    sign_in(client, agent.username)
    assert client.post(path, data={"reason": "forged"}).status_code == 400
    assert _audit("notification.resent") == []


# --- cancel a booking ------------------------------------------------------------------------------


@pytest.fixture
def program(app_ctx):
    seed_catalog()


def _remaining(member: Member) -> int:
    benefit = catalog.benefit_in_force("home_test_drive")
    return entitlements.position(Holder(member.id, None), benefit, "platinum").remaining


def _book(member: Member, dealer, hours_ahead: float, key: str) -> Booking:
    dealer_slot = slot(dealer, hours_ahead=hours_ahead)
    made = booking.book(member, benefit_code="home_test_drive", request_id=key, slot_id=dealer_slot.id).booking
    db.session.flush()
    return made


def _cancel(client, member: Member, booking_id: int, **data):
    path = f"/console/members/{member.member_no}/bookings/{booking_id}/cancel"
    return post_form(client, path, data, from_page=_page(member, "bookings"))


def test_an_agent_cancels_a_booking_before_the_cut_off_and_the_quota_comes_back(client, program, agent, member, dealer):
    set_tier(member, "platinum")
    made = _book(member, dealer, 48, "console-cancel-1")
    assert _remaining(member) == 1
    sign_in(client, agent.username)
    assert f"/bookings/{made.id}/cancel" in _text(client.get(_page(member, "bookings")))
    done = _cancel(client, member, made.id, reason="会员来电取消")
    assert done.status_code == 302
    assert _fresh(Booking, made.id).status == "cancelled" and _remaining(member) == 2
    [row] = _audit("booking.cancelled_for_member")
    assert (row.actor_id, row.reason, row.subject_id) == (agent.actor, "会员来电取消", str(member.id))
    assert row.details == {"booking_id": made.id, "status": "cancelled", "cutoff_waived": False}
    assert _cancel(client, member, made.id, reason="again").status_code == 409  # no longer open


def test_past_the_cut_off_an_agent_may_waive_it_and_the_points_come_back(client, program, agent, member, dealer):
    give_points(member, 5000)
    made = booking.book(  # silver pays the test drive with points
        member, benefit_code="home_test_drive", request_id="console-late-1", slot_id=slot(dealer, hours_ahead=3).id
    ).booking
    spent = made.points_spent
    assert made.paid_with == "points" and spent > 0
    before = queries.balance(member.id).available
    sign_in(client, agent.username)
    assert "waive_cutoff" in _text(client.get(_page(member, "bookings")))
    no_reason = _cancel(client, member, made.id, reason="", waive_cutoff="1")
    assert no_reason.status_code == 422 and 'data-field="reason"' in _text(no_reason)
    done = _cancel(client, member, made.id, reason="经销商改期，免收", waive_cutoff="1")
    assert done.status_code == 302
    assert _fresh(Booking, made.id).status == "cancelled"
    assert queries.balance(member.id).available == before + spent
    [row] = _audit("booking.cancelled_for_member")
    assert row.details["cutoff_waived"] is True and row.details["status"] == "cancelled"


def test_past_the_cut_off_without_a_waiver_it_is_a_late_cancellation(client, program, agent, member, dealer):
    set_tier(member, "platinum")
    made = _book(member, dealer, 3, "console-late-3")
    sign_in(client, agent.username)
    assert _cancel(client, member, made.id, reason="会员不来了").status_code == 302
    assert _fresh(Booking, made.id).status == "late_cancelled" and _remaining(member) == 1
    assert _audit("booking.cancelled_for_member")[0].details["cutoff_waived"] is False


def test_a_dealer_manager_cancels_at_their_dealer_but_may_not_waive_or_touch_another_dealer(
    client, program, member, dealer, other_dealer
):
    set_tier(member, "diamond")
    ours = _book(member, dealer, 48, "console-dm-1")
    late = _book(member, dealer, 3, "console-dm-2")
    elsewhere = _book(member, other_dealer, 48, "console-dm-3")
    manager = factories.operator("dealer_manager", dealer_id=dealer.id)[0]
    sign_in(client, manager.username)
    tab = _text(client.get(_page(member, "bookings")))
    assert f"/bookings/{ours.id}/cancel" in tab and f"/bookings/{elsewhere.id}/cancel" not in tab
    assert "waive_cutoff" not in tab
    assert _cancel(client, member, elsewhere.id, reason="x").status_code == 404
    assert _cancel(client, member, late.id, reason="x", waive_cutoff="1").status_code == 403
    assert _cancel(client, member, ours.id, reason="到店取消").status_code == 302
    assert _fresh(Booking, ours.id).status == "cancelled"
    assert (_fresh(Booking, late.id).status, _fresh(Booking, elsewhere.id).status) == ("booked", "booked")
    assert [row.actor_id for row in _audit("booking.cancelled_for_member")] == [manager.actor]


def test_cancelling_is_refused_to_another_dealer_an_operator_and_without_csrf(
    client, program, agent, member, dealer, other_dealer
):
    set_tier(member, "platinum")
    made = _book(member, dealer, 48, "console-refused-1")
    stranger = _other_dealers_manager(other_dealer)
    sign_in(client, stranger.username)
    assert _cancel(client, member, made.id, reason="x").status_code == 404
    assert _refused_reads(stranger, member)
    operator = factories.operator("operator")[0]
    sign_in(client, operator.username)
    assert _cancel(client, member, made.id, reason="x").status_code == 403
    sign_in(client, agent.username)
    path = f"/console/members/{member.member_no}/bookings/{made.id}/cancel"
    assert client.post(path, data={"reason": "forged"}).status_code == 400
    assert _fresh(Booking, made.id).status == "booked"
    assert _audit("booking.cancelled_for_member") == []


# --- merge request → approve ------------------------------------------------------------------------


@pytest.fixture
def duplicate(dealer):
    return factories.member(status="active", enrolling_dealer_id=dealer.id, phone="13900000277", name="张伟伟")


def _request_merge(client, member: Member, other: Member, **extra):
    data = {"other_member_no": other.member_no, "keep": "this", "reason": "同一人两个账号", "request_id": "m-1"}
    return post_form(
        client,
        f"/console/members/{member.member_no}/merge-requests",
        {**data, **extra},
        from_page=_page(member, "merges"),
    )


def test_an_agent_requests_a_merge_and_a_supervisor_approves_it_in_the_queue(
    client, agent, supervisor, member, duplicate
):
    give_points(duplicate, 700, key="dup")
    sign_in(client, agent.username)
    filed = _request_merge(client, member, duplicate)
    assert filed.status_code == 302 and filed.headers["Location"].endswith("tab=merges")
    assert _request_merge(client, member, duplicate).status_code == 302  # a resent form files nothing new
    [merge] = db.session.scalars(sa.select(MemberMerge)).all()
    assert (merge.survivor_id, merge.merged_ids, merge.status) == (member.id, [duplicate.id], "requested")
    assert merge.requested_by == agent.actor and merge.source == "console"
    assert duplicate.member_no in _text(client.get(_page(member, "merges")))
    assert client.get("/console/merges").status_code == 403  # agents file, supervisors decide

    sign_in(client, supervisor.username)
    queue = _text(client.get("/console/merges"))
    assert f'data-merge="{merge.id}"' in queue and queue.count('data-testid="merge-side"') == 2
    assert member.member_no in queue and duplicate.member_no in queue
    assert "138****0177" in queue and "139****0277" in queue and "张*" in queue
    assert PHONE not in queue and "13900000277" not in queue and "张伟" not in queue
    shown = {row.subject_id for row in _audit("member.read") if row.reason == "console: merge queue"}
    assert shown == {str(member.id), str(duplicate.id)}
    approved = post_form(client, f"/console/merges/{merge.id}/approve", {}, from_page="/console/merges")
    assert approved.status_code == 302
    assert _fresh(MemberMerge, merge.id).status == "applied"
    assert _fresh(Member, duplicate.id).merged_into_id == member.id
    assert queries.balance(member.id).available == 700
    assert [row.actor_id for row in _audit("member.merge_requested")] == [agent.actor]
    assert [row.actor_id for row in _audit("member.merged")] == [supervisor.actor]
    assert 'data-testid="no-merges"' in _text(client.get("/console/merges"))


def test_a_merge_request_is_checked_and_the_requester_cannot_approve_it(client, supervisor, member, duplicate):
    sign_in(client, supervisor.username)
    bad = _request_merge(client, member, member, reason="", keep="both")
    assert bad.status_code == 422
    assert all(f'data-field="{name}"' in _text(bad) for name in ("other_member_no", "reason", "keep"))
    missing = _request_merge(client, member, duplicate, other_member_no="M" + "9" * 11)
    assert missing.status_code == 404
    assert _request_merge(client, member, duplicate, keep="other").status_code == 302
    merge = db.session.scalars(sa.select(MemberMerge)).one()
    assert (merge.survivor_id, merge.merged_ids) == (duplicate.id, [member.id])
    own = post_form(client, f"/console/merges/{merge.id}/approve", {}, from_page="/console/merges")
    assert own.status_code == 409 and _fresh(MemberMerge, merge.id).status == "requested"


def test_a_supervisor_rejects_a_merge_with_a_reason(client, agent, supervisor, member, duplicate):
    sign_in(client, agent.username)
    _request_merge(client, member, duplicate)
    merge = db.session.scalars(sa.select(MemberMerge)).one()
    sign_in(client, supervisor.username)
    path = f"/console/merges/{merge.id}/reject"
    no_reason = post_form(client, path, {"reason": ""}, from_page="/console/merges")
    assert no_reason.status_code == 422 and 'data-field="reason"' in _text(no_reason)
    assert post_form(client, path, {"reason": "不是同一人"}, from_page="/console/merges").status_code == 302
    assert _fresh(MemberMerge, merge.id).status == "rejected"
    assert [row.reason for row in _audit("member.merge_rejected")] == ["不是同一人"]
    assert _fresh(Member, duplicate.id).status == "active"


def test_merging_is_refused_to_dealer_managers_and_without_csrf(
    client, agent, supervisor, member, duplicate, dealer, other_dealer
):
    for manager in (factories.operator("dealer_manager", dealer_id=dealer.id)[0], _other_dealers_manager(other_dealer)):
        sign_in(client, manager.username)
        assert _request_merge(client, member, duplicate).status_code == 403
        assert client.get("/console/merges").status_code == 403
    sign_in(client, agent.username)
    forged = client.post(
        f"/console/members/{member.member_no}/merge-requests",
        data={"other_member_no": duplicate.member_no, "keep": "this", "reason": "x"},
    )
    assert forged.status_code == 400
    _request_merge(client, member, duplicate)
    merge = db.session.scalars(sa.select(MemberMerge)).one()
    sign_in(client, supervisor.username)
    assert client.post(f"/console/merges/{merge.id}/approve").status_code == 400
    assert _fresh(MemberMerge, merge.id).status == "requested"
    assert _audit("member.merged") == []


# --- the callback-task queue ------------------------------------------------------------------------


def _task(member: Member, reason: str, period: str, age_days: int) -> CallbackTask:
    callbacks.open_task(member.id, reason, period)
    task = db.session.scalars(
        sa.select(CallbackTask).where(CallbackTask.member_id == member.id, CallbackTask.period == period)
    ).one()
    task.created_at = utcnow() - dt.timedelta(days=age_days)
    db.session.flush()
    return task


def test_an_agent_claims_notes_and_closes_a_callback_task_oldest_first(client, agent, member):
    newer = _task(member, "low_rating", "b-2", age_days=1)
    older = _task(member, "churn_risk", "2026-11-01", age_days=5)
    sign_in(client, agent.username)
    queue = _text(client.get("/console/callbacks"))
    assert queue.index(f'data-task="{older.id}"') < queue.index(f'data-task="{newer.id}"')
    assert [row.details["members"] for row in _audit("callback_tasks.listed")] == [[member.id, member.id]]

    claimed = post_form(
        client, f"/console/callbacks/{older.id}/claim", {"view": "open"}, from_page="/console/callbacks"
    )
    assert claimed.status_code == 302 and claimed.headers["Location"].endswith("view=mine")
    mine = _text(client.get("/console/callbacks?view=mine"))
    assert f'data-task="{older.id}"' in mine and f'data-task="{newer.id}"' not in mine
    noted = post_form(
        client, f"/console/callbacks/{older.id}/notes", {"body": "无人接听，18点后再打"}, from_page="/console/callbacks"
    )
    assert noted.status_code == 302
    no_outcome = post_form(
        client, f"/console/callbacks/{older.id}/close", {"note": "已沟通"}, from_page="/console/callbacks"
    )
    assert no_outcome.status_code == 422 and 'data-field="outcome"' in _text(no_outcome)
    closed = post_form(
        client,
        f"/console/callbacks/{older.id}/close",
        {"note": "会员满意，继续保养", "outcome": "resolved"},
        from_page="/console/callbacks",
    )
    assert closed.status_code == 302
    task = _fresh(CallbackTask, older.id)
    assert (task.status, task.outcome, task.note, task.claimed_by) == (
        "closed",
        "resolved",
        "会员满意，继续保养",
        agent.id,
    )
    notes = db.session.scalars(sa.select(CallbackTaskNote)).all()
    assert [(n.task_id, n.body, n.author) for n in notes] == [(older.id, "无人接听，18点后再打", agent.actor)]
    assert [a.action for a in _audit("callback_task.claimed") + _audit("callback_task.noted")] == [
        "callback_task.claimed",
        "callback_task.noted",
    ]
    assert _audit("callback_task.closed")[0].details == {"task": older.id, "outcome": "resolved"}
    history = _text(client.get("/console/callbacks?view=closed"))
    assert "无人接听，18点后再打" in history and "会员满意，继续保养" in history


def test_only_the_holder_or_a_supervisor_works_a_claimed_task_and_a_taken_task_is_a_409(
    client, agent, supervisor, member
):
    task = _task(member, "churn_risk", "2026-11-02", age_days=2)
    other = factories.operator("agent")[0]
    sign_in(client, agent.username)
    post_form(client, f"/console/callbacks/{task.id}/claim", {}, from_page="/console/callbacks")
    sign_in(client, other.username)
    taken = post_form(client, f"/console/callbacks/{task.id}/claim", {}, from_page="/console/callbacks")
    assert taken.status_code == 409 and 'role="alert"' in _text(taken)
    not_theirs = post_form(client, f"/console/callbacks/{task.id}/notes", {"body": "x"}, from_page="/console/callbacks")
    assert not_theirs.status_code == 403
    sign_in(client, supervisor.username)
    closed = post_form(
        client,
        f"/console/callbacks/{task.id}/close",
        {"note": "转交经销商", "outcome": "follow_up"},
        from_page="/console/callbacks",
    )
    assert closed.status_code == 302 and _fresh(CallbackTask, task.id).outcome == "follow_up"
    assert _audit("callback_task.closed")[0].actor_id == supervisor.actor


def test_the_callback_queue_is_refused_to_dealer_managers_and_operators_and_without_csrf(client, agent, member, dealer):
    task = _task(member, "churn_risk", "2026-11-03", age_days=2)
    for role, dealer_id in (("dealer_manager", dealer.id), ("operator", None)):
        someone = factories.operator(role, dealer_id=dealer_id)[0]
        sign_in(client, someone.username)
        assert client.get("/console/callbacks").status_code == 403
        assert post_form(client, f"/console/callbacks/{task.id}/claim", {}).status_code == 403
    sign_in(client, agent.username)
    assert client.post(f"/console/callbacks/{task.id}/claim").status_code == 400
    assert _fresh(CallbackTask, task.id).status == "open"
    assert _audit("callback_task.claimed") == []


def test_the_api_closes_a_task_with_an_optional_outcome(client, agent, member):
    task = _task(member, "churn_risk", "2026-11-04", age_days=2)
    _operator, token = factories.operator("agent")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post(f"/api/v1/cs/callback-tasks/{task.id}/claim", headers=headers).status_code == 200
    bad = client.post(
        f"/api/v1/cs/callback-tasks/{task.id}/close", json={"note": "ok", "outcome": "maybe"}, headers=headers
    )
    assert bad.status_code == 422
    done = client.post(
        f"/api/v1/cs/callback-tasks/{task.id}/close", json={"note": "ok", "outcome": "declined"}, headers=headers
    )
    assert done.status_code == 200 and done.json["outcome"] == "declined"


def test_the_callback_queue_pages_oldest_first(client, agent):
    members = [factories.member() for _ in range(21)]
    tasks = [_task(m, "churn_risk", f"2026-10-{n:02d}", age_days=30 - n) for n, m in enumerate(members, start=1)]
    sign_in(client, agent.username)
    first = _text(client.get("/console/callbacks"))
    second = _text(client.get("/console/callbacks?view=open&page=2"))
    assert f'data-task="{tasks[0].id}"' in first and f'data-task="{tasks[20].id}"' not in first
    assert "1 / 2" in first and "?view=open&amp;page=2" in first
    assert f'data-task="{tasks[20].id}"' in second and f'data-task="{tasks[0].id}"' not in second
