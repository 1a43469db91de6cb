"""Who sees a member (README "Who sees a member"): HQ every member; a dealer only a member related
to it, for car service always (selling/servicing dealer of a current car), for the profile and for
an enrollment-only link only with ``dealer_sharing``. Refusals are 404s like a miss, and audited."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.clock import business_today
from app.core.db import db
from app.members import access, services
from app.members.identifiers import new_member_number
from app.members.models import Vehicle, VehicleServicing
from app.wechat import clients
from tests import dms_events, factories
from tests.conftest import run_concurrently
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def dealer(app_ctx):
    return factories.dealer(code="D0101")


@pytest.fixture
def manager_token(dealer):
    return factories.operator("dealer_manager", dealer_id=dealer.id)[1]


def share_with_dealers(member, granted=True):
    services.record_consent(
        member,
        policy_version="2026.1",
        granted=["dealer_sharing"] if granted else [],
        withdrawn=[] if granted else ["dealer_sharing"],
        channel="miniapp",
    )
    db.session.flush()


def points(client, token, member_no):
    return client.get(f"/api/v1/cs/members/{member_no}/points?reason=来店", headers=auth(token))


def search(client, token, phone):
    return client.post("/api/v1/cs/members/search", json={"phone": phone, "reason": "来电"}, headers=auth(token))


def _refusals():
    rows = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "member.read").order_by(AuditEntry.id)
    ).all()
    return [r for r in rows if r.details and r.details.get("refused")]


def _without_request_id(response):
    return {k: v for k, v in response.json.items() if k != "request_id"}


@pytest.mark.parametrize("role", ["agent", "supervisor", "operator"])
def test_hq_roles_see_every_member_and_each_read_is_audited(client, app_ctx, role):
    member = factories.member(phone="13800001001")  # no dealer link, no dealer_sharing
    _hq, token = factories.operator(role)
    assert points(client, token, member.member_no).status_code == 200
    assert search(client, token, "13800001001").status_code == 200
    reads = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "member.read")).all()
    assert [(r.subject_id, r.details) for r in reads] == [(str(member.id), None), (str(member.id), None)]


def test_a_dealer_with_no_relationship_sees_nothing_even_with_dealer_sharing(client, dealer, manager_token):
    other = factories.dealer(code="D0202")
    member = factories.member(phone="13800001002", enrolling_dealer_id=other.id)
    factories.vehicle(owner=member, selling_dealer_id=other.id)
    share_with_dealers(member)
    refused = points(client, manager_token, member.member_no)
    missed = points(client, manager_token, new_member_number())
    assert refused.status_code == missed.status_code == 404
    assert _without_request_id(refused) == _without_request_id(missed)
    assert search(client, manager_token, "13800001002").status_code == 404
    assert [r.subject_id for r in _refusals()] == [str(member.id), str(member.id)]


def test_the_enrolling_dealer_sees_the_member_only_with_dealer_sharing(client, dealer, manager_token):
    member = factories.member(phone="13800001003", enrolling_dealer_id=dealer.id)
    assert points(client, manager_token, member.member_no).status_code == 404
    assert search(client, manager_token, "13800001003").status_code == 404
    assert len(_refusals()) == 2
    share_with_dealers(member)
    assert points(client, manager_token, member.member_no).status_code == 200
    found = search(client, manager_token, "13800001003")
    assert found.status_code == 200 and found.json["phone"] == "138****1003"


def test_the_selling_dealer_serves_the_car_without_dealer_sharing_but_sees_the_profile_only_with_it(
    client, dealer, manager_token
):
    member = factories.member(phone="13800001004")
    factories.vehicle(owner=member, selling_dealer_id=dealer.id)
    assert points(client, manager_token, member.member_no).status_code == 200  # car service: the contract
    assert search(client, manager_token, "13800001004").status_code == 404  # profile: needs dealer_sharing
    share_with_dealers(member)
    assert search(client, manager_token, "13800001004").status_code == 200


def test_the_dealer_credited_with_the_sale_serves_the_car(client, dealer, manager_token):
    member = factories.member()
    car = factories.vehicle()
    services.start_ownership(member, car, started_on=business_today(), credited_dealer_id=dealer.id)
    assert points(client, manager_token, member.member_no).status_code == 200


def test_a_sold_car_ends_the_selling_dealers_view(client, dealer, manager_token):
    member, buyer = factories.member(), factories.member()
    car = factories.vehicle(owner=member, selling_dealer_id=dealer.id)
    assert points(client, manager_token, member.member_no).status_code == 200
    services.start_ownership(buyer, car, started_on=business_today())  # resale: the member's link ends
    assert points(client, manager_token, member.member_no).status_code == 404


def test_the_servicing_dealer_sees_the_owner_from_the_dms_service_event_on(client, dealer, manager_token, post_dms):
    member = factories.member()
    car = factories.vehicle(owner=member, selling_dealer_id=factories.dealer(code="D0303").id)
    assert points(client, manager_token, member.member_no).status_code == 404
    assert post_dms(dms_events.service(car.vin, parts_fen=10_000, labour_fen=5_000)).status_code == 202
    assert points(client, manager_token, member.member_no).status_code == 200
    (servicing,) = db.session.scalars(sa.select(VehicleServicing)).all()
    assert (servicing.vehicle_id, servicing.dealer_id) == (car.id, dealer.id)


def test_a_service_before_the_member_had_the_car_does_not_count(client, dealer, manager_token):
    seller, buyer = factories.member(), factories.member()
    car = factories.vehicle(owner=seller)
    services.record_servicing(car, dealer.id, business_today() - dt.timedelta(days=5))  # the seller's visit
    assert access.serves_a_current_car(seller.id, dealer.id)
    services.start_ownership(buyer, car, started_on=business_today())
    assert points(client, manager_token, buyer.member_no).status_code == 404
    services.record_servicing(car, dealer.id, business_today())  # the new owner's first visit
    assert points(client, manager_token, buyer.member_no).status_code == 200
    servicing = db.session.get(VehicleServicing, (car.id, dealer.id))
    db.session.refresh(servicing)
    assert servicing.first_serviced_on == business_today() - dt.timedelta(days=5)
    services.record_servicing(car, dealer.id, business_today() - dt.timedelta(days=60))  # a late delivery
    db.session.refresh(servicing)
    assert servicing.last_serviced_on == business_today()
    assert servicing.first_serviced_on == business_today() - dt.timedelta(days=60)


def test_withdrawing_dealer_sharing_in_the_mini_app_hides_the_member_at_once(client, fakes, app, http_mock, dealer):
    clients.forget_clients(app)
    mini = MiniClient(client, FakeMiniappWeChat(fakes.mini_app))
    mini.sign_in("o-sharing")
    assert mini.register("13911110005", purposes=["dealer_sharing"]).status_code == 201
    member = services.find_by_phone("13911110005")
    member.enrolling_dealer_id = dealer.id
    db.session.flush()
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    assert points(client, token, member.member_no).status_code == 200
    assert mini.put("/api/v1/me/consents", json={"purposes": ["service_notifications"]}).status_code == 200
    assert points(client, token, member.member_no).status_code == 404
    assert search(client, token, "13911110005").status_code == 404
    assert [r.subject_id for r in _refusals()] == [str(member.id), str(member.id)]


def test_withdrawal_leaves_the_selling_dealers_car_service_but_not_the_profile(client, dealer, manager_token):
    member = factories.member(phone="13800001006")
    factories.vehicle(owner=member, selling_dealer_id=dealer.id)
    share_with_dealers(member)
    assert search(client, manager_token, "13800001006").status_code == 200
    share_with_dealers(member, granted=False)
    assert search(client, manager_token, "13800001006").status_code == 404
    assert points(client, manager_token, member.member_no).status_code == 200


@pytest.mark.postgres
@pytest.mark.committed
def test_service_events_for_one_car_at_once_make_one_servicing_row_with_the_right_dates(app):
    with app.app_context():
        dealer = factories.dealer()
        car = factories.vehicle()
        db.session.commit()
        ids = car.id, dealer.id
    today = business_today()
    days = [today - dt.timedelta(days=n) for n in range(6)]

    def record(i):
        with app.app_context():
            vehicle = db.session.get(Vehicle, ids[0])
            services.record_servicing(vehicle, ids[1], days[i])
            db.session.commit()
            return True

    assert run_concurrently(6, record) == [True] * 6
    with app.app_context():
        (row,) = db.session.scalars(sa.select(VehicleServicing)).all()
        assert (row.first_serviced_on, row.last_serviced_on) == (min(days), max(days))
