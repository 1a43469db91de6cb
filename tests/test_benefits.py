"""Benefits and booking (SPEC §5): catalog versions, entitlements per membership year, slots,
booking, cancel, reschedule, no-shows, check-in, and the mini-app and back-office APIs."""

from __future__ import annotations

import datetime as dt

import flask_babel
import pytest
import sqlalchemy as sa
import time_machine

from app.benefits import availability, booking, catalog, entitlements, slots
from app.benefits.entitlements import Holder
from app.benefits.models import Booking, EntitlementEntry, PilotMember
from app.care.models import Notification
from app.core import events
from app.core.audit import AuditEntry
from app.core.clock import BUSINESS_TZ, utcnow
from app.core.db import db
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.events import BenefitUsed, BookingCancelled, BookingConfirmed
from app.members import services
from app.members.models import WechatIdentity
from app.points import queries
from app.points.ledger import InsufficientPoints
from app.tiers.policy import anniversary
from app.wechat import clients
from tests import factories
from tests.benefit_helpers import give_points, seed_catalog, set_tier, slot, today_slot
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient


@pytest.fixture
def program(app_ctx):
    seed_catalog()
    return factories.dealer(code="D0501")


def remaining(member, code="home_test_drive", tier=None, vehicle_id=None):
    benefit = catalog.benefit_in_force(code)
    holder = Holder(member.id, vehicle_id)
    return entitlements.position(holder, benefit, tier or _tier(member)).remaining


def _tier(member):
    from app.tiers.policy import current_tier

    return current_tier(member.id)


def book(member, dealer_slot=None, code="home_test_drive", request_id=None, **kwargs):
    return booking.book(
        member,
        benefit_code=code,
        request_id=request_id or f"req-{member.id}-{utcnow().timestamp()}",
        slot_id=dealer_slot.id if dealer_slot else None,
        **kwargs,
    )


# --- catalog ---------------------------------------------------------------------------------


def test_the_default_catalog_holds_the_spec_benefits_and_seeding_twice_changes_nothing(program):
    codes = [b.code for b in catalog.benefits_in_force()]
    assert codes == [
        "home_test_drive",
        "vip_lane",
        "pickup_dropoff",
        "roadside_assistance",
        "annual_inspection",
        "birthday_labour_discount",
        "airport_lounge",
    ]
    test_drive = catalog.benefit_in_force("home_test_drive")
    assert test_drive.quotas == {"gold": 1, "platinum": 2, "diamond": 3} and test_drive.transferable
    assert catalog.benefit_in_force("roadside_assistance").binding == "car"
    assert catalog.seed_defaults(actor="test") is None


def test_a_new_catalog_version_is_validated_and_takes_over_when_published(program):
    first = catalog.in_force()
    draft = catalog.draft_from_published("2027", actor="op")
    assert len(draft.benefits) == 7 and catalog.in_force().id == first.id
    bad = catalog.benefit_to_json(draft.benefits[0]) | {"quotas": {"gold": 1}, "eligible_tiers": ["silver"]}
    with pytest.raises(ValidationFailed) as refused:
        catalog.replace_benefits(draft, [bad, {"code": "x"}], actor="op")
    fields = refused.value.fields["benefits"]
    assert "quotas" in fields["0"] and "points_price" not in fields["0"]
    assert {"name", "description", "eligible_tiers"} <= set(fields["1"])
    items = [catalog.benefit_to_json(b) for b in draft.benefits]
    items[0]["quotas"] = {"gold": 2, "platinum": 3, "diamond": 4}
    catalog.replace_benefits(draft, items, actor="op")
    catalog.publish(draft, actor="op")
    assert catalog.in_force().id == draft.id and first.effective_to is not None
    assert catalog.benefit_in_force("home_test_drive").quotas["gold"] == 2
    with pytest.raises(Conflict):
        catalog.replace_benefits(draft, items, actor="op")


def test_a_pilot_is_drawn_reproducibly_and_only_its_members_may_use_the_benefit(program):
    members = [factories.member() for _ in range(6)]
    draft = catalog.draft_from_published("pilot", actor="op")
    items = [catalog.benefit_to_json(b) for b in draft.benefits]
    lounge = next(i for i in items if i["code"] == "airport_lounge")
    lounge.update(pilot_size=3, pilot_seed="lounge-2027")
    catalog.replace_benefits(draft, items, actor="op")
    catalog.publish(draft, actor="op")
    drawn = set(db.session.scalars(sa.select(PilotMember.member_id)))
    assert len(drawn) == 3
    ids = sorted(m.id for m in members)
    expected = sorted(ids, key=lambda i: __import__("hashlib").md5(f"lounge-2027:{i}".encode()).hexdigest())[:3]
    assert drawn == set(expected)  # md5(seed:id) order: anyone can redraw it
    benefit = catalog.benefit_in_force("airport_lounge")
    assert catalog.draw_pilot(benefit) == 3  # drawn once per seed
    outsider = next(m for m in members if m.id not in drawn)
    assert availability.offer(outsider, benefit, "silver").reason == "not_in_pilot"
    insider = next(m for m in members if m.id in drawn)
    assert availability.offer(insider, benefit, "silver").pays_with == "points"


# --- entitlements ----------------------------------------------------------------------------


def test_the_membership_year_starts_on_the_enrollment_anniversary(program):
    enrolled = utcnow() - dt.timedelta(days=400)
    member = factories.member(enrolled_at=enrolled)
    start, end = entitlements.membership_year(Holder(member.id, None))
    anchor = (enrolled + dt.timedelta(hours=8)).date()
    assert start == anniversary(anchor) and end == anniversary(anchor, 2)


def test_an_upgrade_grants_the_difference_and_a_downgrade_keeps_what_was_used(program):
    member = factories.member()
    set_tier(member, "gold")
    assert remaining(member) == 1
    book(member, slot(program))
    assert remaining(member) == 0
    with pytest.raises(booking.QuotaUsedUp):
        book(member, slot(program))
    set_tier(member, "diamond")
    assert remaining(member) == 2  # 3 − the one used
    book(member, slot(program))
    set_tier(member, "gold")
    assert remaining(member) == 0  # two used, gold allows one: nothing taken back, nothing left
    with pytest.raises(booking.QuotaUsedUp):
        book(member, slot(program))
    year = entitlements.membership_year(Holder(member.id, None))[0]
    rows = [(e.kind, e.quantity) for e in entitlements.history(Holder(member.id, None), "home_test_drive", year)]
    assert rows == [("grant", 1), ("use", -1), ("grant", 2), ("use", -1), ("revoke", -1)]  # at each change
    assert sum(q for _k, q in rows) == 0


def test_silver_pays_the_test_drive_with_points_through_the_ledger_and_gets_them_back(program):
    member = factories.member()
    give_points(member, 1500)
    made = book(member, slot(program)).booking
    assert (made.paid_with, made.points_spent) == ("points", 1000)
    assert queries.balance(member.id).available == 500
    with pytest.raises(InsufficientPoints):
        book(member, slot(program))
    booking.cancel(member, made.id)
    assert queries.balance(member.id).available == 1500
    assert made.status == "cancelled"


def test_car_bound_roadside_assistance_follows_the_car_to_its_next_owner(program):
    seller, buyer = factories.member(), factories.member()
    car = factories.vehicle(seller)
    assert availability.offer(buyer, catalog.benefit_in_force("roadside_assistance"), "silver").reason == "needs_car"
    used = book(seller, None, "roadside_assistance", vehicle_id=car.id).booking
    assert used.vehicle_id == car.id
    assert remaining(seller, "roadside_assistance", vehicle_id=car.id) == 3
    services.start_ownership(buyer, car, started_on=car.purchase_date + dt.timedelta(days=1))
    db.session.refresh(seller)
    db.session.refresh(buyer)
    offer = availability.offer(buyer, catalog.benefit_in_force("roadside_assistance"), "silver")
    assert offer.usable and offer.entitlement.remaining == 3  # the car's year, not a fresh one
    assert availability.offer(seller, catalog.benefit_in_force("roadside_assistance"), "silver").reason == "needs_car"
    inspection = book(buyer, slot(program, "inspection"), "annual_inspection", vehicle_id=car.id).booking
    assert inspection.vehicle_id == car.id  # which car a member-bound service is for
    with pytest.raises(ValidationFailed):
        book(seller, slot(program, "inspection"), "annual_inspection", vehicle_id=car.id)  # not theirs any more


# --- booking, cancel, reschedule ---------------------------------------------------------------


def test_a_resend_returns_the_same_booking_and_a_reused_request_id_is_refused(program):
    member = factories.member()
    set_tier(member, "platinum")
    dealer_slot = slot(program)
    first = book(member, dealer_slot, request_id="tap-000001")
    again = book(member, dealer_slot, request_id="tap-000001")
    assert first.new and not again.new and again.booking.id == first.booking.id
    db.session.refresh(dealer_slot)
    assert dealer_slot.booked == 1 and remaining(member) == 1
    with pytest.raises(booking.RequestIdReused):
        book(member, None, "birthday_labour_discount", request_id="tap-000001")


def test_cancelling_before_the_cut_off_restores_the_quota_and_after_it_only_records(program):
    member = factories.member()
    set_tier(member, "platinum")
    early, late = slot(program, hours_ahead=48), slot(program, hours_ahead=3)
    in_time = book(member, early).booking
    too_late = book(member, late).booking
    assert remaining(member) == 0
    booking.cancel(member, in_time.id)
    assert in_time.status == "cancelled" and remaining(member) == 1
    booking.cancel(member, too_late.id)
    assert too_late.status == "late_cancelled" and remaining(member) == 1
    db.session.refresh(early)
    db.session.refresh(late)
    assert (early.booked, late.booked) == (0, 0)
    with pytest.raises(booking.BookingClosed):
        booking.cancel(member, in_time.id)


def test_a_reschedule_moves_the_seat_and_keeps_one_use(program):
    member = factories.member()
    set_tier(member, "gold")
    old_slot, new_slot = slot(program, hours_ahead=48), slot(program, hours_ahead=96)
    old = book(member, old_slot).booking
    moved = booking.reschedule(member, old.id, slot_id=new_slot.id, request_id="move-000001")
    assert moved.new and moved.booking.rescheduled_from_id == old.id and old.status == "cancelled"
    assert (
        booking.reschedule(member, old.id, slot_id=new_slot.id, request_id="move-000001").booking.id == moved.booking.id
    )
    db.session.refresh(old_slot)
    db.session.refresh(new_slot)
    assert (old_slot.booked, new_slot.booked) == (0, 1)
    assert remaining(member) == 0
    # care reminds of the new time only: the old booking's reminder went with its cancellation
    reminders = db.session.execute(
        sa.select(Notification.period, Notification.status).where(
            Notification.member_id == member.id, Notification.kind == "booking_reminder"
        )
    ).all()
    assert sorted((period.split(":")[0], status) for period, status in reminders) == sorted(
        [(str(old.id), "skipped"), (str(moved.booking.id), "planned")]
    )


def test_no_shows_are_recorded_after_the_slot_and_keep_the_quota_used(program):
    member = factories.member()
    set_tier(member, "gold")
    made = book(member, slot(program, hours_ahead=1)).booking
    assert booking.mark_no_shows(now=utcnow() + dt.timedelta(hours=1)) == 0  # within the grace period
    assert booking.mark_no_shows(now=utcnow() + dt.timedelta(hours=3)) == 1
    db.session.refresh(made)
    assert made.status == "no_show" and made.no_show_at is not None and remaining(member) == 0


def test_booking_confirmed_cancelled_and_used_are_published_with_ids(program):
    member = factories.member()
    set_tier(member, "diamond")
    staff = factories.staff(program, role="service_advisor")
    seen = []
    with (
        events._signal(BookingConfirmed, "within").connected_to(seen.append),
        events._signal(BookingCancelled, "within").connected_to(seen.append),
        events._signal(BenefitUsed, "within").connected_to(seen.append),
    ):
        first = book(member, slot(program)).booking
        booking.cancel(member, first.id)
        second = book(member, today_slot(program)).booking
        assert booking.check_in(staff, member) == second
    assert [(type(e).__name__, e.booking_id, e.member_id) for e in seen] == [
        ("BookingConfirmed", first.id, member.id),
        ("BookingCancelled", first.id, member.id),
        ("BookingConfirmed", second.id, member.id),
        ("BenefitUsed", second.id, member.id),
    ]
    assert second.status == "delivered" and second.delivered_by_staff_id == staff.id
    assert db.session.scalar(
        sa.select(AuditEntry.action).where(
            AuditEntry.subject_type == "booking", AuditEntry.subject_id == str(second.id)
        )
    ) == ("benefit.delivered")


# --- slots -------------------------------------------------------------------------------------


def test_a_csv_of_slots_is_all_or_nothing_and_capacity_never_goes_below_bookings(program):
    day = (utcnow() + dt.timedelta(days=10)).date()
    good = f"date,start,end,service_type,capacity\n{day},09:00,10:00,test_drive,4\n{day},10:00,11:00,test_drive,2\n"
    assert slots.import_csv(program, good, actor="mgr") == slots.CsvResult(2, 0)
    assert slots.import_csv(program, good.replace(",4\n", ",6\n"), actor="mgr") == slots.CsvResult(0, 2)
    bad = good + f"{day},12:00,11:00,test_drive,2\nnot-a-date,09:00,10:00,test_drive,1\n"
    bad += "0001-01-01,09:00,10:00,test_drive,1\n9999-12-31,23:00,23:30,test_drive,1\n"  # were a 500 (overflow)
    with pytest.raises(ValidationFailed) as refused:
        slots.import_csv(program, bad, actor="mgr")
    assert set(refused.value.fields) == {"line 4", "line 5", "line 6", "line 7"}
    windows_file = good.replace(",4\n", ",6\n").replace("\n", "\r\n")  # Excel on Windows: same slots
    assert slots.import_csv(program, windows_file, actor="mgr") == slots.CsvResult(0, 2)
    with pytest.raises(ValidationFailed) as refused:  # a lone carriage return: found by the contract fuzz (was a 500)
        slots.import_csv(program, "\r#", actor="mgr")
    assert set(refused.value.fields) == {"file"}
    first = slots.slots_on(program.id, day)[0]
    assert first.capacity == 6
    member = factories.member()
    set_tier(member, "diamond")
    book(member, first)
    with pytest.raises(Conflict):
        slots.publish_slot(
            program,
            service_type="test_drive",
            starts_at=first.starts_at,
            ends_at=first.ends_at,
            capacity=0,
            actor="mgr",
        )


# --- APIs ----------------------------------------------------------------------------------------


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


@pytest.fixture
def mini(client, wechat, program):
    mini = MiniClient(client, wechat)
    mini.sign_in("o-benefits-1")
    assert mini.register("13955550001").status_code == 201
    return mini


@pytest.fixture
def member(mini):
    return services.find_by_phone("13955550001")


def test_the_mini_app_shows_what_i_can_use_and_why_not_in_my_language(mini, member):
    body = mini.get("/api/v1/benefits").json
    by_code = {b["code"]: b for b in body}
    assert by_code["vip_lane"]["usable"] is False and by_code["vip_lane"]["reason"] == "tier_not_eligible"
    assert by_code["vip_lane"]["reason_message"] == "您的等级暂不可用。"
    assert by_code["home_test_drive"]["pays_with"] == "points" and by_code["home_test_drive"]["points_price"] == 1000
    assert by_code["annual_inspection"]["entitlement"]["remaining"] == 1
    assert by_code["roadside_assistance"]["reason"] == "needs_car"
    member.locale = "en"
    db.session.flush()
    flask_babel.refresh()  # the requests share the test's app context, where the locale is cached
    english = {b["code"]: b for b in mini.get("/api/v1/benefits").json}
    assert english["vip_lane"]["reason_message"] == "Not available at your tier."
    assert english["vip_lane"]["name"] == "VIP maintenance lane"
    entitled = {b["code"] for b in mini.get("/api/v1/me/entitlements").json}
    assert "annual_inspection" in entitled and "airport_lounge" not in entitled


def test_booking_through_the_api_is_exactly_once_and_a_full_slot_changes_nothing(mini, member, program):
    set_tier(member, "platinum")
    full = slot(program, capacity=0)
    open_slot = slot(program, capacity=1)
    refused = mini.post(
        "/api/v1/me/bookings", json={"benefit": "home_test_drive", "slot": full.id, "request_id": "req-full-01"}
    )
    assert refused.status_code == 409 and refused.json["error"]["code"] == "slot_full"
    assert remaining(member) == 2  # the use was rolled back with the refusal
    payload = {"benefit": "home_test_drive", "slot": open_slot.id, "request_id": "req-open-01"}
    first = mini.post("/api/v1/me/bookings", json=payload)
    again = mini.post("/api/v1/me/bookings", json=payload)
    assert first.status_code == 201 and again.json["id"] == first.json["id"]
    assert first.json["slot"]["available"] == 0 and first.json["paid_with"] == "quota"
    listed = mini.get("/api/v1/me/bookings").json
    assert [b["id"] for b in listed] == [first.json["id"]]
    day = open_slot.day.isoformat()
    seen = mini.get(f"/api/v1/dealers/{program.code}/slots?day={day}&service_type=test_drive").json
    assert {s["id"]: s["available"] for s in seen}[open_slot.id] == 0
    cancelled = mini.post(f"/api/v1/me/bookings/{first.json['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    member.locale = "en"
    db.session.flush()
    flask_babel.refresh()  # the requests share the test's app context, where the locale is cached
    again = mini.post(f"/api/v1/me/bookings/{first.json['id']}/cancel")
    assert again.status_code == 409 and again.json["error"]["message"] == "This booking is no longer open."


def test_bad_booking_input_gets_field_errors_not_a_500(mini, member, program):
    missing = mini.post("/api/v1/me/bookings", json={"benefit": "home_test_drive"})
    assert missing.status_code == 422 and "request_id" in missing.json["error"]["fields"]
    unknown = mini.post("/api/v1/me/bookings", json={"benefit": "no_such", "request_id": "req-bad-001"})
    assert unknown.status_code == 422 and unknown.json["error"]["fields"]["benefit"] == ["未知的权益。"]
    no_slot = mini.post("/api/v1/me/bookings", json={"benefit": "annual_inspection", "request_id": "req-bad-002"})
    assert no_slot.status_code == 422 and "slot" in no_slot.json["error"]["fields"]
    wrong = slot(program, "maintenance")
    other = mini.post(
        "/api/v1/me/bookings", json={"benefit": "annual_inspection", "slot": wrong.id, "request_id": "req-bad-003"}
    )
    assert other.status_code == 422 and "slot" in other.json["error"]["fields"]
    vip = mini.post("/api/v1/me/bookings", json={"benefit": "vip_lane", "slot": wrong.id, "request_id": "req-bad-004"})
    assert vip.status_code == 409 and vip.json["error"]["code"] == "benefit_unavailable"


def test_staff_scan_checks_the_member_in_and_delivers_the_booking(mini, member, client, wechat, program, time_machine):
    from app.members.staff_mode import bind, issue_invite

    set_tier(member, "gold")
    made = book(member, today_slot(program)).booking
    staff = MiniClient(client, wechat)
    staff.sign_in("o-advisor-ben")
    advisor = factories.staff(program, code="SA0501", role="service_advisor")
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == "o-advisor-ben"))
    bind(identity, issue_invite(advisor, actor="test")[0])
    card = staff.post("/api/v1/staff/scans", json={"code": mini.get("/api/v1/me/member-code").json["code"]})
    assert card.status_code == 200, card.json
    assert card.json["checked_in"]["id"] == made.id and card.json["checked_in"]["status"] == "delivered"
    assert card.json["bookings"] == []
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))  # a new member code
    again = staff.post(
        "/api/v1/staff/scans", json={"code": mini.get("/api/v1/me/member-code").json["code"], "booking_id": made.id}
    )
    assert again.status_code == 409


def test_dealer_managers_publish_slots_for_their_own_dealer_only(client, program):
    other = factories.dealer(code="D0599")
    _manager, token = factories.operator("dealer_manager", dealer_id=program.id)
    headers = {"Authorization": f"Bearer {token}"}
    start = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    body = {
        "service_type": "test_drive",
        "starts_at": start.isoformat(),
        "ends_at": (start + dt.timedelta(hours=1)).isoformat(),
        "capacity": 3,
    }
    made = client.post("/api/v1/cs/slots", json=body, headers=headers)
    assert made.status_code == 201 and made.json["capacity"] == 3
    assert client.post("/api/v1/cs/slots", json=body | {"dealer_code": other.code}, headers=headers).status_code == 404
    day = (start + dt.timedelta(days=1)).date()
    csv_text = f"date,start,end,service_type,capacity\n{day},09:00,10:00,inspection,2\n{day},25:00,10:00,inspection,2\n"
    refused = client.post("/api/v1/cs/slots/csv", json={"csv": csv_text}, headers=headers)
    assert refused.status_code == 422 and list(refused.json["error"]["fields"]) == ["line 3"]
    done = client.post("/api/v1/cs/slots/csv", json={"csv": csv_text.rsplit("\n", 2)[0] + "\n"}, headers=headers)
    assert done.json == {"created": 1, "updated": 0}


def test_hq_edits_and_publishes_a_catalog_version_through_the_api(client, program):
    _op, token = factories.operator("operator")
    headers = {"Authorization": f"Bearer {token}"}
    draft = client.post("/api/v1/program/benefit-catalogs", json={"name": "2027"}, headers=headers)
    assert draft.status_code == 201 and len(draft.json["benefits"]) == 7
    items = draft.json["benefits"]
    items[1]["quotas"] = {"gold": 0}
    refused = client.put(
        f"/api/v1/program/benefit-catalogs/{draft.json['id']}/benefits", json={"benefits": items}, headers=headers
    )
    assert refused.status_code == 422 and "quotas" in refused.json["error"]["fields"]["benefits"]["1"]
    items[1]["quotas"] = {"gold": None, "platinum": None, "diamond": None}
    items = [i for i in items if i["code"] != "airport_lounge"]
    saved = client.put(
        f"/api/v1/program/benefit-catalogs/{draft.json['id']}/benefits", json={"benefits": items}, headers=headers
    )
    assert saved.status_code == 200, saved.json
    published = client.post(f"/api/v1/program/benefit-catalogs/{draft.json['id']}/publish", json={}, headers=headers)
    assert published.json["status"] == "published"
    assert catalog.benefit_in_force("airport_lounge") is None
    _agent, agent_token = factories.operator("agent")
    assert (
        client.get("/api/v1/program/benefit-catalogs", headers={"Authorization": f"Bearer {agent_token}"}).status_code
        == 403
    )


def test_entitlement_rows_are_append_only(program):
    member = factories.member()
    set_tier(member, "gold")
    book(member, slot(program))
    row = db.session.scalar(sa.select(EntitlementEntry).limit(1))
    with pytest.raises(sa.exc.DBAPIError), db.session.begin_nested():
        db.session.execute(sa.update(EntitlementEntry).where(EntitlementEntry.id == row.id).values(quantity=5))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Booking)) == 1


def test_the_birthday_discount_is_used_on_the_birthday_at_a_chosen_dealer(program, time_machine):
    member = factories.member()
    benefit = catalog.benefit_in_force("birthday_labour_discount")
    assert availability.offer(member, benefit, "silver").reason == "not_birthday"  # no birthday given
    member.birthday = dt.date(1990, 3, 14)
    db.session.flush()
    time_machine.move_to(dt.datetime(2027, 3, 13, 20, 0, tzinfo=dt.UTC))  # 04:00 on 14 March in Shanghai
    assert availability.offer(member, benefit, "silver").usable
    with pytest.raises(ValidationFailed) as refused:
        book(member, None, "birthday_labour_discount")
    assert "dealer" in refused.value.fields
    made = book(member, None, "birthday_labour_discount", dealer_code=program.code).booking
    assert (made.dealer_id, made.paid_with, made.slot_id) == (program.id, "quota", None)
    time_machine.move_to(dt.datetime(2027, 3, 15, 4, 0, tzinfo=dt.UTC))
    assert availability.offer(member, benefit, "silver").reason == "not_birthday"


def test_a_dealer_benefit_without_a_dealer_goes_to_the_preferred_dealer_while_it_is_open(program, time_machine):
    member = factories.member(birthday=dt.date(1990, 3, 14))
    member.preferred_dealer_id = program.id
    db.session.flush()
    time_machine.move_to(dt.datetime(2027, 3, 13, 20, 0, tzinfo=dt.UTC))  # the birthday in Shanghai
    made = book(member, None, "birthday_labour_discount").booking
    assert (made.dealer_id, made.slot_id) == (program.id, None)

    other = factories.member(birthday=dt.date(1990, 3, 14))
    other.preferred_dealer_id = factories.dealer(code="D0597", active=False).id
    db.session.flush()
    with pytest.raises(ValidationFailed) as refused:  # a closed preferred dealer is no default
        book(other, None, "birthday_labour_discount")
    assert "dealer" in refused.value.fields


def test_staff_of_another_dealer_cannot_check_a_booking_in(program):
    member = factories.member()
    set_tier(member, "gold")
    made = book(member, today_slot(program)).booking
    elsewhere = factories.staff(factories.dealer(code="D0598"), role="service_advisor")
    assert booking.check_in(elsewhere, member) is None  # nothing due at their dealer
    with pytest.raises(NotFound):
        booking.check_in(elsewhere, member, made.id)
    assert made.status == "booked"


def test_a_slot_just_after_midnight_can_be_checked_in_shortly_before_it(program):
    """Check-in takes today's bookings, and also one whose slot starts within the hour (the next
    business day's first minutes) or is running; a slot hours away on the next day is refused."""
    member = factories.member()
    set_tier(member, "diamond")
    staff = factories.staff(program, role="service_advisor")
    with time_machine.travel(dt.datetime(2027, 1, 5, 23, 58, tzinfo=BUSINESS_TZ), tick=False):
        later = book(member, slot(program, hours_ahead=3), request_id="later").booking
        soon = book(member, slot(program, hours_ahead=2 / 60), request_id="soon").booking
        assert soon.slot.day == dt.date(2027, 1, 6) and later.slot.day == dt.date(2027, 1, 6)
        assert booking.check_in(staff, member) == soon  # the only one due
        with pytest.raises(booking.BookingClosed):
            booking.check_in(staff, member, later.id)
    assert soon.status == "delivered" and later.status == "booked"


def test_a_reschedule_to_a_full_slot_changes_nothing(mini, member, program):
    set_tier(member, "gold")
    old_slot, full = slot(program, hours_ahead=48), slot(program, hours_ahead=50, capacity=0)
    made = mini.post(
        "/api/v1/me/bookings", json={"benefit": "home_test_drive", "slot": old_slot.id, "request_id": "req-resched-1"}
    )
    moved = mini.post(
        f"/api/v1/me/bookings/{made.json['id']}/reschedule", json={"slot": full.id, "request_id": "req-resched-2"}
    )
    assert moved.status_code == 409 and moved.json["error"]["code"] == "slot_full"
    assert mini.get("/api/v1/me/bookings").json[0]["status"] == "booked"
    db.session.refresh(old_slot)
    assert old_slot.booked == 1 and remaining(member) == 0
