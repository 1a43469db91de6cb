"""Benefits a partner delivers (roadside assistance, airport lounges): booked like any benefit
(quota or points in one transaction, once per request id), the partner's service code asked for
after the commit and kept, the signed usage callback stored first and recorded once as the use
(the rating request follows), a cancel before use giving back and voiding the code; the real
signed HTTP client against recorded shapes; and the exactly-once proofs on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import responses
import sqlalchemy as sa

from app import gateways
from app.benefits import booking, partners
from app.benefits.models import Booking, EntitlementEntry, PartnerOrder
from app.care.models import Notification
from app.config import settings_of
from app.core.audit import AuditEntry
from app.core.clock import utcnow
from app.core.db import db
from app.core.inbox import InboundEvent
from app.core.security import sign_timestamped
from app.gateways import ALREADY_USED, Refused, ServiceOrder, Unavailable
from app.gateways.partner_http import HttpBenefitPartner, signature
from app.jobs.drain import drain_inbox
from app.members.models import Member
from app.points import queries
from tests import factories
from tests.benefit_helpers import give_points, seed_catalog
from tests.conftest import run_concurrently
from tests.test_benefits_concurrency import in_own_context

BASE = "https://partner.example.com"


@pytest.fixture
def partner(app):
    fake = gateways.benefit_partner(app)
    fake.reset()
    return fake


@pytest.fixture
def program(app_ctx, partner):
    seed_catalog()
    return partner


def _book(member, code, request_id, **kwargs):
    result = booking.book(member, benefit_code=code, request_id=request_id, **kwargs)
    db.session.commit()  # the edge: the partner is asked after the commit (eager jobs here)
    return result.booking


def _order(booking_id):
    return db.session.scalar(
        sa.select(PartnerOrder).where(PartnerOrder.booking_id == booking_id).execution_options(populate_existing=True)
    )


def _status(booking_id):
    return db.session.scalar(sa.select(Booking.status).where(Booking.id == booking_id))


def _left(vehicle_id):
    return db.session.scalar(
        sa.select(sa.func.sum(EntitlementEntry.quantity)).where(
            EntitlementEntry.vehicle_id == vehicle_id, EntitlementEntry.benefit_code == "roadside_assistance"
        )
    )


def _usage(order, event_id="use-0001", code=None, used_at=None):
    return {
        "event_id": event_id,
        "out_order_no": order.out_order_no,
        "service_code": code or order.service_code,
        "used_at": (used_at or utcnow()).isoformat(),
        "used_where": "G15 沈海高速 K1203",
    }


def _post_usage(client, app, document, *, secret=None):
    body = json.dumps(document, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **sign_timestamped(secret or _secret(app), body)}
    return client.post("/api/v1/partners/benefit-usage", data=body, headers=headers)


def _secret(app):
    return settings_of(app).BENEFIT_PARTNER_SECRET


# --- the flow ------------------------------------------------------------------------------------


def test_roadside_assistance_is_booked_on_the_car_issued_by_the_partner_used_and_rated(program, client, app):
    owner = factories.member()
    car = factories.vehicle(owner)
    made = _book(owner, "roadside_assistance", "rescue-req-001", vehicle_id=car.id)
    assert (made.paid_with, made.vehicle_id, made.dealer_id) == ("quota", car.id, None)
    order = _order(made.id)
    assert order.status == "issued" and order.service_code and order.service == "roadside_assistance"
    assert [c["out_order_no"] for c in program.of("issue")] == [order.out_order_no]
    assert _left(car.id) == 3  # the car's four a year, one taken
    assert _book(owner, "roadside_assistance", "rescue-req-001", vehicle_id=car.id).id == made.id  # a resend
    assert len(program.of("issue")) == 1

    program.use(order.out_order_no)
    document = _usage(order)
    first = _post_usage(client, app, document)
    again = _post_usage(client, app, document)
    assert (first.status_code, first.json["status"]) == (202, "accepted")
    assert (again.status_code, again.json["status"]) == (200, "duplicate")
    stored = db.session.scalar(sa.select(InboundEvent).where(InboundEvent.source == partners.SOURCE))
    assert json.loads(stored.body)["out_order_no"] == order.out_order_no  # the raw body, kept first
    drain_inbox(partners.SOURCE)
    db.session.commit()
    assert _status(made.id) == "delivered"
    assert _order(made.id).status == "used" and _order(made.id).used_where == "G15 沈海高速 K1203"
    assert db.session.scalar(sa.select(InboundEvent.outcome).where(InboundEvent.id == stored.id)) == "delivered"
    rating = db.session.scalar(sa.select(Notification).where(Notification.kind == "rating_request"))
    assert rating is not None and rating.payload["booking_id"] == made.id  # as after a dealer check-in
    audit = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "benefit.delivered"))
    assert audit.details["by"] == "partner" and audit.details["cost_fen"] == 40000


def test_the_mini_app_books_a_lounge_with_points_sees_the_code_and_cancels_it(client, app, program):
    from app.wechat import clients
    from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient

    clients.forget_clients(app)
    mini = MiniClient(client, FakeMiniappWeChat(gateways.installed(app).mini_app))
    mini.sign_in("o-lounge-1")
    assert mini.register("13955550091").status_code == 201
    member = db.session.scalar(sa.select(Member).order_by(Member.id.desc()))
    give_points(member, 3000)
    db.session.commit()
    before = queries.balance(member.id).available  # 3,000 and the welcome points
    made = mini.post("/api/v1/me/bookings", json={"benefit": "airport_lounge", "request_id": "lounge-req-01"})
    assert made.status_code == 201, made.json
    assert made.json["paid_with"] == "points" and made.json["points_spent"] == 2500
    assert queries.balance(member.id).available == before - 2500
    listed = mini.get("/api/v1/me/bookings").json[0]
    assert listed["partner"]["status"] == "issued" and len(listed["partner"]["service_code"]) == 8
    cancelled = mini.post(f"/api/v1/me/bookings/{made.json['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert queries.balance(member.id).available == before  # the points came back
    order = _order(made.json["id"])
    assert order.status == "voided" and program.orders[order.out_order_no]["status"] == "void"
    late = _post_usage(client, app, _usage(order, event_id="use-after-void"))
    assert late.status_code == 202
    drain_inbox(partners.SOURCE)
    db.session.commit()
    assert _status(made.json["id"]) == "cancelled"  # one outcome: the cancel
    outcome = db.session.scalar(sa.select(InboundEvent.outcome).where(InboundEvent.external_id == "use-after-void"))
    assert outcome == "used after the booking was cancelled"  # kept for review, not delivered


def test_a_code_used_before_its_void_reached_the_partner_is_kept_for_review(program, client, app):
    owner = factories.member()
    car = factories.vehicle(owner)
    made = _book(owner, "roadside_assistance", "rescue-req-005", vehicle_id=car.id)
    order = _order(made.id)
    program.use(order.out_order_no)  # the rescue happened while the member cancelled in the app
    booking.cancel(owner, made.id)
    db.session.commit()
    voided = _order(made.id)
    assert voided.status == "used" and "before the void" in voided.last_error and _left(car.id) == 4
    assert _post_usage(client, app, _usage(order, event_id="use-late-1")).status_code == 202
    drain_inbox(partners.SOURCE)
    outcome = db.session.scalar(sa.select(InboundEvent.outcome).where(InboundEvent.external_id == "use-late-1"))
    assert outcome == "used after the booking was cancelled" and _order(made.id).used_at is not None
    assert partners.resend_open_orders(utcnow() + dt.timedelta(hours=1)) == 0  # nothing left to send


def test_a_partner_that_refuses_ends_the_order_and_gives_the_quota_back(program):
    owner = factories.member()
    car = factories.vehicle(owner)
    program.fail_next("issue", Refused("service area not covered", code=40010))
    made = _book(owner, "roadside_assistance", "rescue-req-002", vehicle_id=car.id)
    order = _order(made.id)
    assert order.status == "failed" and "40010" in order.last_error
    assert _status(made.id) == "cancelled" and _left(car.id) == 4


def test_a_partner_that_is_down_is_asked_again_by_the_sweeper(program):
    owner = factories.member()
    car = factories.vehicle(owner)
    program.fail_next("issue", Unavailable("timeout"))
    made = _book(owner, "roadside_assistance", "rescue-req-003", vehicle_id=car.id)
    assert _order(made.id).status == "pending"  # the job failed (RQ retries it; here: eager)
    assert partners.resend_open_orders(utcnow() + dt.timedelta(minutes=3)) == 1
    db.session.commit()
    assert _order(made.id).status == "issued" and len(program.of("issue")) == 1


def test_bad_or_unsigned_usage_callbacks_are_refused(client, app, program):
    good = {"event_id": "e1", "out_order_no": "LB1", "service_code": "1", "used_at": utcnow().isoformat()}
    assert _post_usage(client, app, good, secret="not-the-secret").status_code == 401
    bad = _post_usage(client, app, {"event_id": "e2", "used_at": "yesterday"})
    assert bad.status_code == 422 and {"out_order_no", "service_code", "used_at"} <= set(bad.json["error"]["fields"])
    unknown = _post_usage(client, app, good)
    assert unknown.status_code == 202
    drain_inbox(partners.SOURCE)
    assert db.session.scalar(sa.select(InboundEvent.outcome).where(InboundEvent.external_id == "e1")) == "unknown order"


def test_a_usage_with_the_wrong_code_does_not_deliver(program, client, app):
    owner = factories.member()
    car = factories.vehicle(owner)
    made = _book(owner, "roadside_assistance", "rescue-req-004", vehicle_id=car.id)
    assert _post_usage(client, app, _usage(_order(made.id), code="00000000x")).status_code == 202
    drain_inbox(partners.SOURCE)
    assert _status(made.id) == "booked"


# --- the real HTTP client ------------------------------------------------------------------------


def _signed_correctly(request, secret="s3cret", app_id="loyalty-oem"):
    headers = request.headers
    expected = signature(secret, app_id, headers["X-Timestamp"], headers["X-Nonce"], request.body)
    return headers["X-App-Id"] == app_id and headers["X-Sign"] == expected


def test_the_real_partner_client_signs_its_calls_and_reads_the_answers(http_mock):
    client = HttpBenefitPartner(BASE, "loyalty-oem", "s3cret")
    http_mock.add(
        responses.POST,
        f"{BASE}/open/v1/service-orders",
        json={
            "code": 0,
            "msg": "success",
            "data": {
                "order_no": "RS20261202000123",
                "service_code": "58213907",
                "expire_time": "2027-12-02T23:59:59+08:00",
            },
        },
    )
    issued = client.issue(
        ServiceOrder("LB000000000042", "roadside_assistance", "M0000042", "13900000000", "LVVDB11B0ND000001")
    )
    assert issued.partner_order_no == "RS20261202000123" and issued.service_code == "58213907"
    assert issued.expires_at == dt.datetime(2027, 12, 2, 15, 59, 59, tzinfo=dt.UTC)
    sent = http_mock.calls[0].request
    assert _signed_correctly(sent)
    assert json.loads(sent.body) == {
        "out_order_no": "LB000000000042",
        "service_type": "roadside_assistance",
        "member_no": "M0000042",
        "contact_phone": "13900000000",
        "vin": "LVVDB11B0ND000001",
    }


@pytest.mark.parametrize(
    ("expire_time", "expected"),
    [
        ("2027-12-02 23:59:59", dt.datetime(2027, 12, 2, 15, 59, 59, tzinfo=dt.UTC)),  # no offset: Beijing time
        ("2027-12-02T15:59:59Z", dt.datetime(2027, 12, 2, 15, 59, 59, tzinfo=dt.UTC)),
        ("0001-01-01T00:00:00+08:00", Unavailable),  # converting it to UTC would overflow
        ("9999-12-31T23:59:59-08:00", Unavailable),
        ("next tuesday", Unavailable),
    ],
)
def test_the_real_partner_client_reads_expiry_times_in_beijing_time_and_within_the_calendar(
    http_mock, expire_time, expected
):
    http_mock.add(
        responses.POST,
        f"{BASE}/open/v1/service-orders",
        json={"code": 0, "data": {"order_no": "RS1", "service_code": "58213907", "expire_time": expire_time}},
    )
    client = HttpBenefitPartner(BASE, "loyalty-oem", "s3cret")
    order = ServiceOrder("LB1", "lounge", "M1", None, None)
    if expected is Unavailable:
        with pytest.raises(Unavailable):
            client.issue(order)
    else:
        assert client.issue(order).expires_at == expected


@pytest.mark.parametrize(
    ("status", "answer", "error", "code"),
    [
        (200, {"code": 40010, "msg": "area not covered"}, Refused, 40010),
        (200, {"code": 50001, "msg": "system busy"}, Unavailable, 50001),
        (502, {"code": 0}, Unavailable, None),
        (200, {"code": 0, "data": {"order_no": "x"}}, Unavailable, None),  # no service code: unreadable
    ],
)
def test_the_real_partner_client_tells_refusals_from_outages(http_mock, status, answer, error, code):
    http_mock.add(responses.POST, f"{BASE}/open/v1/service-orders", json=answer, status=status)
    with pytest.raises(error) as raised:
        HttpBenefitPartner(BASE, "loyalty-oem", "s3cret").issue(ServiceOrder("LB1", "lounge", "M1", None, None))
    assert raised.value.code == code


def test_the_real_partner_client_voids_and_an_unknown_order_is_void_already(http_mock):
    client = HttpBenefitPartner(BASE, "loyalty-oem", "s3cret")
    url = f"{BASE}/open/v1/service-orders/cancel"
    http_mock.add(responses.POST, url, json={"code": 0, "msg": "success"})
    http_mock.add(responses.POST, url, json={"code": 40401, "msg": "order not found"})
    http_mock.add(responses.POST, url, json={"code": ALREADY_USED, "msg": "already used"})
    client.void("LB1")
    client.void("LB2")
    with pytest.raises(Refused) as used:
        client.void("LB3")
    assert used.value.code == ALREADY_USED and _signed_correctly(http_mock.calls[2].request)
    assert [json.loads(c.request.body) for c in http_mock.calls] == [{"out_order_no": f"LB{i}"} for i in (1, 2, 3)]


# --- exactly once, on PostgreSQL -----------------------------------------------------------------


def _issued_roadside(app, request_id):
    """A roadside booking whose code the partner issued: (owner id, booking id, order no, code)."""
    with app.app_context():
        seed_catalog()
        owner = factories.member()
        car = factories.vehicle(owner)
        made = booking.book(owner, benefit_code="roadside_assistance", request_id=request_id, vehicle_id=car.id)
        db.session.commit()
        order = _order(made.booking.id)
        assert order.service_code is not None
        return owner.id, made.booking.id, order.out_order_no, order.service_code


def _car_with_one_roadside_left(app):
    with app.app_context():
        seed_catalog()
        owner = factories.member()
        car = factories.vehicle(owner)
        for i in range(3):
            booking.book(owner, benefit_code="roadside_assistance", request_id=f"used-before-{i}", vehicle_id=car.id)
        db.session.commit()
        return owner.id, car.id


def _count(app, model, *where):
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


@pytest.mark.postgres
@pytest.mark.committed
def test_five_racing_requests_for_the_cars_last_roadside_use_get_exactly_one_code(app, partner):
    owner_id, car_id = _car_with_one_roadside_left(app)
    partner.reset()

    def ask(i):
        return in_own_context(
            app,
            lambda: (
                booking.book(
                    db.session.get(Member, owner_id),
                    benefit_code="roadside_assistance",
                    request_id=f"race-rescue-{i}",
                    vehicle_id=car_id,
                ).booking.id
            ),
        )

    results = run_concurrently(5, ask)
    assert sum(isinstance(r, int) for r in results) == 1, results
    assert all(isinstance(r, booking.QuotaUsedUp) for r in results if not isinstance(r, int))
    assert _count(app, Booking, Booking.benefit_code == "roadside_assistance") == 4
    assert _count(app, PartnerOrder) == 4 and len(partner.of("issue")) == 1


@pytest.mark.postgres
@pytest.mark.committed
def test_the_same_request_id_from_ten_threads_opens_one_partner_order(app, partner):
    with app.app_context():
        seed_catalog()
        member = factories.member()
        give_points(member, 5000)
        db.session.commit()
        member_id = member.id

    def ask(_i):
        return in_own_context(
            app,
            lambda: (
                booking.book(
                    db.session.get(Member, member_id), benefit_code="airport_lounge", request_id="lounge-twice-01"
                ).booking.id
            ),
        )

    results = run_concurrently(10, ask)
    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert _count(app, PartnerOrder) == 1 and len(partner.of("issue")) == 1
    with app.app_context():
        assert queries.balance(member_id).available == 2500  # spent once


@pytest.mark.postgres
@pytest.mark.committed
def test_the_same_usage_delivered_five_times_at_once_is_recorded_once(app, partner):
    _owner_id, booking_id, order_no, code = _issued_roadside(app, "rescue-once-01")

    def report(i):
        return in_own_context(
            app, lambda: partners.record_use(order_no, code, used_at=utcnow(), used_where=f"station {i}")
        )

    results = run_concurrently(5, report)
    assert results.count("delivered") == 1 and results.count("already recorded") == 4, results
    assert _count(app, Notification, Notification.kind == "rating_request") == 1
    assert _count(app, AuditEntry, AuditEntry.action == "benefit.delivered") == 1
    with app.app_context():
        assert db.session.get(Booking, booking_id).status == "delivered"


@pytest.mark.postgres
@pytest.mark.committed
def test_a_cancel_racing_the_partners_usage_report_has_one_outcome(app, partner):
    owner_id, booking_id, order_no, code = _issued_roadside(app, "rescue-race-01")

    def act(i):
        if i == 0:
            return in_own_context(app, lambda: booking.cancel(db.session.get(Member, owner_id), booking_id).status)
        return in_own_context(app, lambda: partners.record_use(order_no, code, used_at=utcnow(), used_where=None))

    results = run_concurrently(2, act)
    with app.app_context():
        final = db.session.get(Booking, booking_id).status
        restored = db.session.scalar(
            sa.select(sa.func.count()).where(
                EntitlementEntry.kind == "restore", EntitlementEntry.booking_id == booking_id
            )
        )
    if results[1] == "delivered":
        assert final == "delivered" and isinstance(results[0], booking.BookingClosed) and restored == 0
    else:
        assert results == ["cancelled", "used after the booking was cancelled"] and final == "cancelled"
        assert restored == 1
