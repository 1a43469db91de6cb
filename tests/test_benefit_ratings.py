"""After a booking: points given back into their lots on a cancel, the member's 1–5 rating, and a
low rating announced for a customer-service callback."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from app.benefits import booking, ratings
from app.core import events
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.core.errors import NotFound
from app.core.events import BookingRatedLow
from app.points import queries, settlement
from app.points.models import PointEntry, PointLot
from app.wechat import conversation
from tests import factories
from tests.benefit_helpers import give_points, seed_catalog, set_tier, slot, today_slot


@pytest.fixture
def program(app_ctx):
    seed_catalog()
    return factories.dealer(code="D0601")


def book(member, dealer_slot, code="home_test_drive"):
    return booking.book(
        member, benefit_code=code, request_id=f"req-{member.id}-{utcnow().timestamp()}", slot_id=dealer_slot.id
    ).booking


def test_cancelling_a_points_booking_refunds_into_the_same_lot_with_its_expiry(program):
    member = factories.member()
    give_points(member, 1500)
    lot = db.session.scalar(sa.select(PointLot).where(PointLot.member_id == member.id))
    lots_before = db.session.scalar(sa.select(sa.func.count()).where(PointLot.member_id == member.id))
    made = book(member, slot(program))
    booking.cancel(member, made.id)
    refund = db.session.scalar(sa.select(PointEntry).where(PointEntry.idempotency_key == f"benefit:refund:{made.id}"))
    assert (refund.kind, refund.points, refund.reason_code) == ("refund", 1000, "benefit_cancelled")
    db.session.refresh(lot)
    assert (lot.remaining, lot.status) == (1500, "available")  # no new lot with a new expiry
    assert db.session.scalar(sa.select(sa.func.count()).where(PointLot.member_id == member.id)) == lots_before
    assert queries.balance(member.id).available == 1500


def delivered(member, program):
    made = booking.book(
        member, benefit_code="home_test_drive", request_id=f"r-{member.id}", slot_id=today_slot(program).id
    ).booking
    staff = factories.staff(program, role="sales_advisor")
    assert booking.check_in(staff, member, made.id) is made
    return made


def test_a_delivered_booking_is_rated_once_and_a_low_rating_asks_for_a_callback(program):
    member = factories.member()
    set_tier(member, "gold")
    made = delivered(member, program)
    seen = []
    with events._signal(BookingRatedLow, "within").connected_to(seen.append):
        rated = ratings.rate(member, made.id, 2, "迟到了")
        again = ratings.rate(member, made.id, 2, "迟到了")  # a resend
    assert rated is again and (rated.rating, rated.rating_comment) == (2, "迟到了") and rated.rated_at
    assert [(type(e).__name__, e.member_id, e.booking_id, e.rating) for e in seen] == [
        ("BookingRatedLow", member.id, made.id, 2)
    ]
    with pytest.raises(ratings.AlreadyRated):
        ratings.rate(member, made.id, 5)


def test_a_good_rating_asks_for_nothing_and_only_delivered_bookings_of_mine_are_rated(program):
    member, other = factories.member(), factories.member()
    set_tier(member, "gold")
    made = delivered(member, program)
    seen = []
    with events._signal(BookingRatedLow, "within").connected_to(seen.append):
        assert ratings.rate(member, made.id, 3).rating == 3
    assert seen == []
    with pytest.raises(NotFound):
        ratings.rate(other, made.id, 4)
    open_one = booking.book(
        member, benefit_code="vip_lane", request_id="vip-1", slot_id=slot(program, "maintenance").id
    )
    with pytest.raises(ratings.NotDelivered):
        ratings.rate(member, open_one.booking.id, 4)


# --- the chat answers from the benefits domain ----------------------------------------------------


def test_the_chat_answers_benefits_left_and_upcoming_bookings_in_the_members_language(program):
    member = factories.member()
    set_tier(member, "gold")
    text = conversation.answer("benefits", member).content
    assert "免费上门试乘试驾：本年度剩余 1 次" in text and "VIP保养专属通道：不限次" in text
    booked = book(member, slot(program))
    text = conversation.answer("benefits", member).content
    assert "免费上门试乘试驾：本年度剩余 0 次" in text
    cards = conversation.answer("booking", member).items
    assert len(cards) == 2 and cards[1].url.endswith(f"?id={booked.id}")
    assert cards[1].title.startswith("免费上门试乘试驾，") and cards[1].description == program.name
    member.locale = "en"
    db.session.flush()
    with force_locale("en"):
        english = conversation.answer("benefits", member).content
    assert "Free at-home test drive: 0 left this year" in english
    assert len(conversation.answer("booking", None).items) == 1  # a stranger gets the card only


# --- benefit cost lines in the dealer settlement -------------------------------------------------


def test_delivered_benefits_join_the_delivering_dealers_monthly_statement(program):
    gold, diamond = factories.member(), factories.member()
    set_tier(gold, "gold")
    set_tier(diamond, "diamond")
    delivered(gold, program)  # home test drive, OEM funds ¥300
    delivered(diamond, program)
    staff = factories.staff(program, role="service_advisor")
    lane = booking.book(
        diamond, benefit_code="vip_lane", request_id="lane-1", slot_id=today_slot(program, "maintenance").id
    )
    booking.check_in(staff, diamond, lane.booking.id)  # the dealer funds its own lane
    booking.book(
        diamond, benefit_code="home_test_drive", request_id="open-1", slot_id=slot(program).id
    )  # not delivered
    month = business_today().replace(day=1)

    [statement] = settlement.generate(month, actor="op")

    assert (statement.dealer_id, statement.benefit_fen, statement.net_fen) == (program.id, 60000, 60000)
    lines = settlement.as_dict(statement)["lines"]
    assert lines == [
        {"kind": "benefit", "code": "home_test_drive", "funder": "oem", "quantity": 2, "amount_fen": 60000},
        {"kind": "benefit", "code": "vip_lane", "funder": "dealer", "quantity": 1, "amount_fen": 0},
    ]
    assert settlement.generate(month, actor="op")[0].benefit_fen == 60000  # a regenerated draft: same lines
    header, row = list(csv.reader(io.StringIO(settlement.to_csv(month))))
    assert row[header.index("benefit_fen")] == "60000"
