"""Demo data for ``make run``: dealers, advisors, a few members and cars, three members whose care
reminders fall due today, the benefit catalog and slots, mall items (safe to run twice, on any day),
and the walk-throughs ``make run`` prints (``flask demo walkthrough booking|mall|care``)."""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app import gateways
from app.benefits import availability, booking, ratings
from app.benefits import catalog as benefit_catalog
from app.benefits import partners as benefit_partners
from app.benefits import slots as benefit_slots
from app.benefits.models import Booking, DealerSlot
from app.campaigns.models import Campaign, RedPacketGrant
from app.care import notify, planning, rules
from app.care.models import CallbackTask, Notification
from app.complaints import services as complaint_services
from app.config import current_settings
from app.core import tunables
from app.core.clock import business_day_start, business_today, to_business, utcnow
from app.core.db import db
from app.core.errors import AppError
from app.dealers import master_data
from app.dealers.models import Dealer, Staff
from app.jobs.drain import drain_inbox
from app.mall import catalog as mall_catalog
from app.mall import ordering as mall_ordering
from app.mall import payments as mall_payments
from app.mall import settling as mall_settling
from app.mall import vouchers as mall_vouchers
from app.members import identities, member_code, services, staff_mode
from app.members.activation import credit_welcome_gift
from app.members.identifiers import vin_with_check_digit
from app.members.models import Member, Vehicle
from app.operators import auth
from app.operators.models import Operator
from app.points import earning, expiry, ledger
from app.points import queries as points_queries
from app.points.models import PointEntry, PointLot
from app.referrals.models import Referral
from app.tiers import policy
from app.tiers.policy import current_tier
from app.wechat.pay_sandbox import FakeOrderPayments

DEALERS = (
    # code, name, region, city, address, lat, lng
    ("D0101", "长春一汽大众金达店", "north", "长春", "长春市绿园区西安大路 1688 号", 43.8868, 125.2773),
    ("D0201", "北京一汽大众百得店", "north", "北京", "北京市朝阳区北四环东路 108 号", 39.9990, 116.4700),
    ("D0301", "上海一汽大众申捷店", "east", "上海", "上海市闵行区沪闵路 6088 号", 31.1130, 121.3810),
    ("D0401", "成都一汽大众蓉达店", "west", "成都", "成都市武侯区二环路南四段 18 号", 30.6220, 104.0430),
)
STAFF = (
    # dealer, code, name, role, monthly target
    ("D0101", "SA0101", "王磊", "sales_advisor", 40),
    ("D0101", "SV0101", "赵敏", "service_advisor", 0),
    ("D0101", "MM0101", "孙丽", "member_manager", 0),
    ("D0201", "SA0201", "李娜", "sales_advisor", 35),
    ("D0301", "SA0301", "陈晨", "sales_advisor", 30),
    ("D0401", "SA0401", "刘洋", "sales_advisor", 25),
)
MEMBERS = (
    # phone, name, status, dealer, advisor, vin suffix, model code, model name, price fen
    (
        "13900000001",
        "张伟",
        "active",
        "D0101",
        "SA0101",
        "N3000101",
        "MAGOTAN",
        "迈腾 Magotan 330TSI",
        21_990_000,
    ),
    (
        "13900000002",
        "王芳",
        "active",
        "D0201",
        "SA0201",
        "N3000102",
        "SAGITAR",
        "速腾 Sagitar 280TSI",
        14_990_000,
    ),
    (
        "13900000003",
        "李强",
        "pre_enrolled",
        "D0301",
        "SA0301",
        "N3000103",
        "TAYRON",
        "探岳 Tayron 380TSI",
        26_990_000,
    ),
)
DEMO_POLICY_VERSION = "2026.1"
#: Back-office accounts for local runs only (``flask demo seed`` refuses to run in production).
DEMO_OPERATORS = (
    ("agent", "客服 小周", "agent", None),
    ("supervisor", "客服主管 老陈", "supervisor", None),
    ("operator", "总部运营 王敏", "operator", None),
    ("d0101", "金达店会员经理 孙丽", "dealer_manager", "D0101"),
)
#: Slots the demo dealer D0101 publishes for the next two weeks: service type, start, end, capacity.
DEMO_SLOTS = (
    ("test_drive", dt.time(10), dt.time(11), 3),
    ("test_drive", dt.time(14), dt.time(15), 3),
    ("maintenance", dt.time(9), dt.time(12), 10),
    ("inspection", dt.time(9), dt.time(17), 5),
    ("pickup", dt.time(9), dt.time(10), 2),
)
DEMO_SLOT_DAYS = 14
DEMO_MALL_MEMBER = "13900000001"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - a published local-demo password, refused in production


def seed() -> dict[str, int]:
    """Insert what is missing; returns counts of what was created."""
    created = {"dealers": 0, "staff": 0, "members": 0, "operators": 0}
    dealers = {d.code: d for d in db.session.scalars(sa.select(Dealer))}
    for code, name, region, city, address, lat, lng in DEALERS:
        if code not in dealers:
            dealers[code] = Dealer(
                code=code, name=name, region=region, city=city, address=address, latitude=lat, longitude=lng
            )
            db.session.add(dealers[code])
            created["dealers"] += 1
    db.session.flush()
    staff = {s.staff_code: s for s in db.session.scalars(sa.select(Staff))}
    for dealer_code, code, name, role, target in STAFF:
        if code not in staff:
            staff[code] = Staff(
                dealer_id=dealers[dealer_code].id,
                staff_code=code,
                name=name,
                role=role,
                monthly_enrollment_target=target,
            )
            db.session.add(staff[code])
            created["staff"] += 1
    db.session.flush()
    for phone, name, status, dealer_code, advisor, vin_suffix, model_code, model_name, price in MEMBERS:
        if services.find_by_phone(phone) is not None:
            continue
        now = utcnow()
        dealer, advisor_row = dealers[dealer_code], staff[advisor]
        member = services.create_member(
            channel="purchase",
            status=status,
            phone=phone,
            name=name,
            city=dealer.city,
            enrolling_dealer_id=dealer.id,
            enrolling_staff_id=advisor_row.id,
            enrolled_at=now,
            activated_at=now if status == "active" else None,
            attribution_until=services.attribution_deadline(now),
        )
        services.record_consent(
            member, policy_version=DEMO_POLICY_VERSION, granted=["service_notifications"], channel="dms"
        )
        vehicle = Vehicle(
            vin=vin_with_check_digit("LFV2A21K", vin_suffix),
            model_code=model_code,
            model_name=model_name,
            model_year=2026,
            purchase_date=business_today() - dt.timedelta(days=30),
            price_fen=price,
            selling_dealer_id=dealer.id,
        )
        db.session.add(vehicle)
        db.session.flush()
        services.start_ownership(
            member,
            vehicle,
            started_on=vehicle.purchase_date,  # type: ignore[arg-type]
            credited_dealer_id=dealer.id,
            credited_staff_id=advisor_row.id,
        )
        if status == "pre_enrolled":
            services.mint_order_token(
                member, vehicle=vehicle, dealer_id=dealer.id, staff_id=advisor_row.id, source_event_id=None
            )
        _demo_points(member, vehicle, dealer)
        created["members"] += 1
    created["operators"] = _demo_operators(dealers)
    created["benefit_catalogs"] = int(benefit_catalog.seed_defaults(actor="demo") is not None)
    created["slots"] = _demo_slots(dealers["D0101"])
    created["mall_items"] = _demo_mall_items()
    created["care_members"] = seed_care_members()
    return created


#: The demo mall: code, kind, zh_CN name, en name, points, stock, cost in fen.
DEMO_MALL_ITEMS = (  # code, kind, names, points, stock, cost in fen, cash on top in fen
    ("labour200", "coupon", "工时费 200 元抵用券", "¥200 off labour", 1000, 500, 20_000, 0),
    ("wash", "service_voucher", "精致洗车一次", "One detailed car wash", 300, 1000, 5_000, 0),
    ("umbrella", "physical", "品牌晴雨伞", "Brand umbrella", 500, 200, 4_500, 0),
    ("coffee", "partner_voucher", "合作咖啡券", "Partner coffee voucher", 100, 0, 1_500, 0),
    ("green", "charity", "为公益植一棵树", "Plant a tree (charity)", 200, 100_000, 2_000, 0),
    ("oilkit", "service_voucher", "机油保养套餐（积分+现金）", "Oil kit (points + cash)", 300, 100, 19_900, 9_900),
)
#: The demo member's mini-app openid when paying the points + cash item in the sandbox.
DEMO_MALL_OPENID = "o-demo-mall-payer"
WECHAT_PAY_NOTIFICATIONS = "/api/v1/wechat-pay/notifications"


def _demo_mall_items() -> int:
    created = 0
    for code, kind, name_zh, name_en, points, stock, cost, cash in DEMO_MALL_ITEMS:
        if mall_catalog.item_by_code(code) is None:
            fields = {
                "kind": kind,
                "name": {"zh_CN": name_zh, "en": name_en},
                "description": {"zh_CN": ""},
                "points_price": points,
                "stock": stock,
                "cost_fen": cost,
                "cash_fen": cash,
                "eligible_tiers": [],
                "per_month_limit": 5 if kind != "charity" else None,
            }
            mall_catalog.create_item(code, fields, actor="cli:demo")
            created += 1
    return created


def walkthrough_mall(out_dir: Path) -> list[str]:
    """The mall in ``make run``: redeem a coupon, write its QR, a dealer scans it, a second scan is
    refused; a physical order cancelled returns points and stock; a points + cash item paid through
    the WeChat Pay sandbox. One commit per step (each step is what one request would do). Returns
    the lines to show."""
    member = services.find_by_phone(DEMO_MALL_MEMBER)
    staff = db.session.scalar(sa.select(Staff).where(Staff.staff_code == "SV0101"))
    if member is None or staff is None or mall_catalog.item_by_code("oilkit") is None:
        raise LookupError("run `flask demo seed` first")
    stamp = utcnow().strftime("%Y%m%d%H%M%S%f")
    lines = [f"member {member.member_no}: {points_queries.balance(member.id).available} points"]
    coupon = mall_ordering.redeem(member, item_code="labour200", quantity=1, request_id=f"demo-coupon-{stamp}").order
    voucher = coupon.vouchers[0]
    db.session.commit()
    png = out_dir / f"voucher-{voucher.id}.png"
    png.write_bytes(mall_vouchers.png(voucher))
    lines += [
        f"redeemed labour200 for {coupon.points_spent} points: order {coupon.id} {coupon.status}",
        f"voucher {voucher.id} QR: {png}",
        f"balance now {points_queries.balance(member.id).available} points",
    ]
    used = mall_vouchers.consume(staff, voucher.code)
    db.session.commit()
    lines.append(f"dealer {staff.staff_code} scanned it: voucher {used.status}, order {coupon.status}")
    try:
        mall_vouchers.consume(staff, voucher.code)
        lines.append("second scan ACCEPTED (this is a bug)")
    except AppError as refused:
        db.session.rollback()
        lines.append(f"second scan refused: {refused.code} ({refused.message})")
    umbrella = mall_catalog.item_by_code("umbrella")
    assert umbrella is not None
    stock_before, points_before = umbrella.stock, points_queries.balance(member.id).available
    order = mall_ordering.redeem(
        member, item_code="umbrella", quantity=1, request_id=f"demo-umbrella-{stamp}", address="长春市绿园区 1 号"
    ).order
    db.session.commit()
    db.session.refresh(umbrella)
    lines.append(
        f"ordered umbrella: order {order.id} {order.status}, balance {points_queries.balance(member.id).available},"
        f" stock {umbrella.stock}"
    )
    mall_ordering.cancel(member, order.id)
    db.session.commit()
    db.session.refresh(umbrella)
    points_after = points_queries.balance(member.id).available
    lines.append(
        f"cancelled it: order {order.status}, balance {points_after} (was {points_before}),"
        f" stock {umbrella.stock} (was {stock_before})"
    )
    return lines + _walkthrough_points_and_cash(member, stamp)


def _walkthrough_points_and_cash(member: Member, stamp: str) -> list[str]:
    """Redeem the points + cash item, pay it in the sandbox, deliver WeChat's signed notification to
    our endpoint and drain it as the worker would: the order is fulfilled once."""
    kit = mall_ordering.redeem(
        member, item_code="oilkit", quantity=1, request_id=f"demo-oilkit-{stamp}", payer_openid=DEMO_MALL_OPENID
    ).order
    db.session.commit()
    payment = mall_payments.of_order(kit.id)
    assert payment is not None
    lines = [
        f"redeemed oilkit for {kit.points_spent} points + ¥{kit.cash_fen / 100:.2f}: order {kit.id} {kit.status},"
        f" WeChat Pay order {payment.out_trade_no}"
    ]
    sandbox = gateways.pay_orders()
    if not isinstance(sandbox, FakeOrderPayments):
        return [*lines, "WeChat Pay is the real one here: pay it in the mini-app"]
    notification = sandbox.pay(payment.out_trade_no)
    client = current_app.test_client()
    answers = [client.post(WECHAT_PAY_NOTIFICATIONS, data=notification, content_type="text/xml") for _ in range(2)]
    drain_inbox(mall_settling.SOURCE)  # what a worker does with the stored notification
    db.session.commit()
    db.session.refresh(kit)
    return [
        *lines,
        f"paid in the sandbox; the notification delivered twice was answered {[a.status_code for a in answers]}:"
        f" order {kit.status} with {len(kit.vouchers)} voucher(s),"
        f" balance {points_queries.balance(member.id).available}",
    ]


def _demo_slots(dealer: Dealer) -> int:
    """Two weeks of slots at D0101 from tomorrow, so the demo can book (existing ones are kept)."""
    before = db.session.scalar(sa.select(sa.func.count()).where(DealerSlot.dealer_id == dealer.id)) or 0
    for offset in range(1, DEMO_SLOT_DAYS + 1):
        day = business_today() + dt.timedelta(days=offset)
        for service_type, start, end, capacity in DEMO_SLOTS:
            starts_at, ends_at = benefit_slots.local_window(day, start, end)
            exists = db.session.scalar(
                sa.select(DealerSlot.id).where(
                    DealerSlot.dealer_id == dealer.id,
                    DealerSlot.service_type == service_type,
                    DealerSlot.starts_at == starts_at,
                )
            )
            if exists is None:
                benefit_slots.publish_slot(
                    dealer,
                    service_type=service_type,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    capacity=capacity,
                    actor="demo",
                )
    after = db.session.scalar(sa.select(sa.func.count()).where(DealerSlot.dealer_id == dealer.id)) or 0
    return after - before


def _demo_points(member: Member, vehicle: Vehicle, dealer: Dealer) -> None:
    """Earn through the real rules: the purchase, and for active members a welcome gift and a service."""
    bought_at = utcnow() - dt.timedelta(days=30)
    purchase = {"price_fen": vehicle.price_fen, "model_code": vehicle.model_code, "purchase_type": "new"}
    earning.award_event(
        member,
        "vehicle.delivered",
        purchase,
        ref=f"DEMO-{vehicle.vin}",
        occurred_at=bought_at,
        dealer=dealer,
        hold_reward=member.status == "pre_enrolled",
    )
    if member.status == "active":
        credit_welcome_gift(member, bought_at)
        service = {
            "parts_fen": 128_000,
            "labour_fen": 46_000,
            "total_fen": 174_000,
            "service_type": "maintenance",
            "mileage_km": 5_000,
            "model_code": vehicle.model_code,
        }
        earning.award_event(
            member,
            "service.completed",
            service,
            ref=f"DEMO-RO-{vehicle.vin}",
            occurred_at=utcnow() - dt.timedelta(days=2),
            dealer=dealer,
        )


def _demo_operators(dealers: dict[str, Dealer]) -> int:
    existing = set(db.session.scalars(sa.select(Operator.username)))
    created = 0
    for username, name, role, dealer_code in DEMO_OPERATORS:
        if username not in existing:
            dealer_id = dealers[dealer_code].id if dealer_code else None
            auth.create_operator(username, name=name, role=role, password=DEMO_PASSWORD, dealer_id=dealer_id)
            created += 1
    return created


# --- walk-through: a Gold member's home test drive ----------------------------------------------


@dataclass
class Walkthrough:
    """What the booking walk-through did (the CLI prints the steps as they happen; tests read this)."""

    member_no: str = ""
    left: list[int] = field(default_factory=list)  # test drives left after each step
    statuses: list[str] = field(default_factory=list)  # the bookings' statuses, in order
    callback_task_id: int | None = None  # the customer-service callback the low rating opened


def _test_drives_left(member: Member) -> int:
    offer = availability.offer(member, benefit_catalog.benefit_in_force("home_test_drive"), current_tier(member.id))  # type: ignore[arg-type]
    return offer.entitlement.remaining if offer.entitlement and offer.entitlement.remaining is not None else 0


def _slot_today(dealer: Dealer) -> DealerSlot:
    """A test-drive slot at the dealer starting in a few minutes (check-in takes today's bookings)."""
    starts_at = utcnow().replace(second=0, microsecond=0) + dt.timedelta(minutes=5)
    return benefit_slots.publish_slot(
        dealer,
        service_type="test_drive",
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(hours=1),
        capacity=5,
        actor="demo",
    )


def walk_booking(say: Callable[[str], None]) -> Walkthrough:
    """SPEC §5 end to end through the real services: a new Gold member books a home test drive
    (the quota drops), cancels (it comes back), rebooks for today, is checked in by member code at
    the dealer, rates it 2, and the low rating opens a customer-service callback task."""
    seed()
    dealer = db.session.scalar(sa.select(Dealer).where(Dealer.code == "D0101"))
    advisor = db.session.scalar(sa.select(Staff).where(Staff.staff_code == "SA0101"))
    assert dealer is not None and advisor is not None
    result = Walkthrough()
    now = utcnow()
    member = services.create_member(
        channel="miniapp", status="active", phone=f"139{secrets.randbelow(10**8):08d}", name="演示金卡会员",
        city=dealer.city, enrolling_dealer_id=dealer.id, enrolled_at=now, activated_at=now,
    )  # fmt: skip
    services.record_consent(
        member, policy_version=DEMO_POLICY_VERSION, granted=["service_notifications"], channel="miniapp"
    )
    policy.change_tier(policy.get_state(member.id, lock=True), "gold", "upgrade", 0, now)
    result.member_no = member.member_no
    result.left.append(_test_drives_left(member))
    say(f"1. {member.member_no} is a Gold member: {result.left[-1]} free home test drive left this year")

    later = db.session.scalar(
        sa.select(DealerSlot)
        .where(DealerSlot.dealer_id == dealer.id, DealerSlot.service_type == "test_drive")
        .where(DealerSlot.starts_at > now + dt.timedelta(days=2), DealerSlot.booked < DealerSlot.capacity)
        .order_by(DealerSlot.starts_at)
    )
    assert later is not None
    first = booking.book(
        member, benefit_code="home_test_drive", request_id=f"walk-{secrets.token_hex(6)}", slot_id=later.id
    ).booking
    result.left.append(_test_drives_left(member))
    say(
        f"2. booked #{first.id} at {dealer.code} for {to_business(later.starts_at):%Y-%m-%d %H:%M}:"
        f" {result.left[-1]} left"
    )

    booking.cancel(member, first.id)
    result.left.append(_test_drives_left(member))
    result.statuses.append(first.status)
    say(f"3. cancelled #{first.id} more than 24 h ahead ({first.status}): {result.left[-1]} left again")

    today = _slot_today(dealer)
    second = booking.book(
        member, benefit_code="home_test_drive", request_id=f"walk-{secrets.token_hex(6)}", slot_id=today.id
    ).booking
    result.left.append(_test_drives_left(member))
    say(f"4. rebooked #{second.id} for today {to_business(today.starts_at):%H:%M}: {result.left[-1]} left")

    code, _expires = member_code.issue(member.id)
    scanned = staff_mode.scan_member_code(advisor, code)
    delivered = booking.check_in(advisor, scanned, None)
    assert delivered is not None
    result.statuses.append(delivered.status)
    say(f"5. advisor {advisor.staff_code} scanned the member code: #{delivered.id} {delivered.status}")

    rated = ratings.rate(member, delivered.id, 2, "顾问迟到了")
    say(f"6. the member rated it {rated.rating}")
    task = db.session.scalar(
        sa.select(CallbackTask).where(CallbackTask.member_id == member.id, CallbackTask.reason == "low_rating")
    )
    assert task is not None
    result.callback_task_id = task.id
    say(
        f"7. callback task #{task.id} ({task.reason}, {task.status}) is in the call centre's queue:"
        " /console/callbacks (GET /api/v1/cs/callback-tasks)"
    )
    _walk_roadside(member, dealer, result, say)
    return result


def _walk_roadside(member: Member, dealer: Dealer, result: Walkthrough, say: Callable[[str], None]) -> None:
    """A benefit a partner delivers: roadside assistance on the member's car, its service code from
    the partner (the sandbox), the partner's usage report recording the use."""
    car = Vehicle(
        vin=vin_with_check_digit("LFV2A21K", f"T{secrets.randbelow(10**7):07d}"),  # T: model year 2026
        model_code="ID4",
        model_name="ID.4 CROZZ",
        model_year=2026,
        purchase_date=business_today() - dt.timedelta(days=30),
        price_fen=20_000_000,
        selling_dealer_id=dealer.id,
    )
    db.session.add(car)
    db.session.flush()
    services.start_ownership(member, car, started_on=car.purchase_date)
    db.session.refresh(member)
    rescue = booking.book(
        member, benefit_code="roadside_assistance", request_id=f"walk-{secrets.token_hex(6)}", vehicle_id=car.id
    ).booking
    order = benefit_partners.order_of(rescue.id)
    assert order is not None
    benefit_partners.issue_service_code(order.id)  # the job that runs after the commit, run here to show it
    db.session.refresh(order)
    say(
        f"8. roadside assistance for the car (car-bound, {rescue.paid_with}): partner order {order.out_order_no}"
        f" {order.status}, service code {order.service_code}"
    )
    outcome = benefit_partners.record_use(
        order.out_order_no, order.service_code or "", used_at=utcnow(), used_where="G1 京哈高速 K88"
    )
    result.statuses.append(outcome)
    say(
        f"9. the partner reported the rescue (POST /api/v1/partners/benefit-usage): #{rescue.id} {outcome},"
        " a rating request follows"
    )


# --- care reminders: three members with something due today ------------------------------------

CARE_MEMBERS = (
    # phone, name, the reminder due today, follows the service account (else reached by SMS)
    ("13900000004", "周杰", "birthday", True),
    ("13900000005", "吴敏", "points_expiring", False),
    ("13900000006", "郑华", "tier_at_risk", True),
)
CARE_KINDS = [kind for _, _, kind, _ in CARE_MEMBERS]
EXPIRING_POINTS = 800


def seed_care_members() -> int:
    """The care members (created once), then their dates moved to today's: a birthday today,
    800 points expiring in 7 days, a Gold tier reviewed in 30 days with no activity for a year.
    Returns how many were created."""
    created, now, today = 0, utcnow(), business_today()
    for phone, name, kind, follows in CARE_MEMBERS:
        member = services.find_by_phone(phone)
        if member is None:
            member = services.create_member(
                channel="cs",
                status="active",
                phone=phone,
                name=name,
                city="长春",
                enrolled_at=now - dt.timedelta(days=400),
                activated_at=now - dt.timedelta(days=400),
            )
            services.record_consent(
                member,
                policy_version=DEMO_POLICY_VERSION,
                granted=["service_notifications", "marketing"],
                channel="cs",
            )
            if follows:
                identity = identities.get_or_create(current_settings().WECHAT_APP_ID, f"demo-openid-{phone}")
                identities.bind(identity, member)
                identities.follow(identity, now)
            created += 1
        _CARE_DATES[kind](member, today)
    db.session.flush()
    return created


def _birthday_today(member: Member, today: dt.date) -> None:
    if member.birth_month_day not in rules.birthday_month_days(today):
        member.birthday = dt.date(1992, today.month, today.day)  # 1992 has a 29 February


def _points_expiring_in_a_week(member: Member, today: dt.date) -> None:
    """Points expire at month ends; the demo moves its lot's end to 7 days from today (a lot the
    nightly expiry already took, or one spent, is replaced by a new one)."""
    end = business_day_start(today + dt.timedelta(days=planning.EXPIRY_REMINDER_DAYS[-1] + 1))
    lot_id = db.session.scalar(
        sa.select(PointLot.id)
        .join(PointEntry, PointEntry.id == PointLot.entry_id)
        .where(
            PointLot.member_id == member.id,
            PointLot.status == "available",
            PointLot.remaining > 0,
            PointEntry.idempotency_key.startswith(f"demo-care-expiring:{member.id}:"),
        )
        .order_by(PointLot.id.desc())
        .limit(1)
    )
    if lot_id is None:
        posting = ledger.earn(
            ledger.Earning(
                member_id=member.id,
                currency="reward",
                points=EXPIRING_POINTS,
                idempotency_key=f"demo-care-expiring:{member.id}:{today.isoformat()}",
                source_type="demo",
                note="demo: points that expire in a week",
            )
        )
        lot_id = db.session.scalar(sa.select(PointLot.id).where(PointLot.entry_id == posting.id))
    db.session.execute(sa.update(PointLot).where(PointLot.id == lot_id).values(expires_at=end))


def _tier_at_risk(member: Member, today: dt.date) -> None:
    """Gold for 11 months, reviewed in 30 days, nothing qualifying for over a year: would drop."""
    state = policy.get_state(member.id, lock=True)
    state.tier = "gold"
    state.achieved_at = utcnow() - dt.timedelta(days=335)
    state.review_on = today + dt.timedelta(days=policy.AT_RISK_DAYS.value())
    state.last_qualifying_at = utcnow() - dt.timedelta(days=400)


_CARE_DATES: dict[str, Callable[[Member, dt.date], None]] = {
    "birthday": _birthday_today,
    "points_expiring": _points_expiring_in_a_week,
    "tier_at_risk": _tier_at_risk,
}
NO_QUIET_HOURS = {"start": "00:00", "end": "00:00"}
WALKTHROUGH_ACTOR = ("cli", "demo-walkthrough")


def walk_through_care(echo: Callable[[str], None], *, lift_quiet_hours: bool = False) -> list[Notification]:
    """``flask demo walkthrough care``: seed, plan today's reminders, send them through the sandbox and
    show what went out. The rules are the real ones; only the rows' due time (09:00) is moved to now,
    and, if asked, the quiet hours are lifted for this run (an audited program setting, put back).
    Commits as it goes (planning, then each send, like the jobs). Returns the care members' rows."""
    settings = current_settings()
    if settings.is_production or not settings.wechat_sandbox:
        raise RuntimeError("the walkthrough sends messages: it runs against the WeChat sandbox only")
    seed()
    db.session.commit()
    today, now = business_today(), utcnow()
    members = {services.find_by_phone(phone).id: name for phone, name, _, _ in CARE_MEMBERS}  # type: ignore[union-attr]
    echo(f"1. flask care plan  (today is {today} in Shanghai: a birthday, points expiring in 7 days, a tier at risk)")
    for result in planning.plan(today, kinds=CARE_KINDS):
        echo(f"   {result.kind:<16} {result.rows} new row(s)")
    db.session.commit()
    rows = _care_rows(members)
    waiting = [row for row in rows if row.status == "planned"]
    for row in waiting:
        row.due_at = min(row.due_at, now)
    db.session.commit()
    echo(
        f"2. Reminders are due at 09:00 Shanghai time; the walkthrough moves the {len(waiting)} waiting row(s)"
        " to now. Everything else is the real rule set: consent, opt-outs, quiet hours, marketing caps,"
        " channels in order (mini-app, service-account template, SMS)."
    )
    local = to_business(now)
    quiet = rules.outside_quiet_hours("birthday", now) != now
    previous_quiet_hours = rules.QUIET_HOURS.value()
    if quiet and lift_quiet_hours:
        tunables.set_value(rules.QUIET_HOURS.key, NO_QUIET_HOURS, actor=WALKTHROUGH_ACTOR, reason="demo walkthrough")
        db.session.commit()
        echo(f"   It is {local:%H:%M} in Shanghai, inside the quiet hours: lifted for this run (audited).")
    elif quiet:
        echo(
            f"   It is {local:%H:%M} in Shanghai, inside the quiet hours {previous_quiet_hours['start']}–"
            f"{previous_quiet_hours['end']}: the dispatcher holds these until they end. Run again with"
            " --lift-quiet-hours to send them now."
        )
    installed = gateways.installed()
    fakes = [installed.official_account, installed.mini_app, installed.sms]
    calls_before = [len(getattr(fake, "calls", [])) for fake in fakes]
    try:
        handled = notify.send_due()
    finally:
        if quiet and lift_quiet_hours:
            tunables.set_value(
                rules.QUIET_HOURS.key, previous_quiet_hours, actor=WALKTHROUGH_ACTOR, reason="demo walkthrough done"
            )
            db.session.commit()
    echo(f"3. flask care send-due: {handled} handled")
    rows = _care_rows(members)
    for row in rows:
        outcome = row.status + (f" by {row.channel}" if row.status in {"sent", "delivered"} else "")
        echo(f"   {members[row.member_id]:<4} {row.kind:<16} {outcome}{f'  ({row.error})' if row.error else ''}")
    echo("4. What the sandbox was asked to send in this run:")
    for fake, before in zip(fakes, calls_before, strict=True):
        for call in getattr(fake, "calls", [])[before:]:
            to = call.get("touser") or f"…{str(call.get('phone', ''))[-4:]}"
            echo(f"   {call['api']:<14} to {to}  {call.get('template_id') or call.get('template_code') or ''}")
    echo("   All of it, newest first: .venv/bin/flask --app wsgi wechat sandbox-calls")
    return rows


def _care_rows(members: dict[int, str]) -> list[Notification]:
    """Today's reminders of the care members (every kind the walkthrough plans)."""
    return list(
        db.session.scalars(
            sa.select(Notification)
            .where(
                Notification.member_id.in_(members),
                Notification.kind.in_(CARE_KINDS),
                Notification.created_at >= business_day_start(business_today()),
            )
            .order_by(Notification.id)
            .execution_options(populate_existing=True)
        )
    )


# --- dashboard history: 30 days of plausible activity, then the rollups -------------------------

HISTORY_DAYS = 30
HISTORY_PHONE = "137{:08d}"  # the history's members: 137 + a sequence (the marker that it ran)
HISTORY_KINDS = (
    ("tier_upgrade", "official_template"),
    ("points_expiring", "miniapp_subscribe"),
    ("service_reminder", "official_template"),
    ("birthday", "sms"),
)
HISTORY_STATES = ("delivered", "delivered", "delivered", "sent", "sent", "failed", "skipped")
HISTORY_COMPLAINTS = ("points_missing", "points_missing", "service_quality", "benefit", "tier", "redemption", "other")


@dataclass
class _History:
    """What the history's steps share: the dice, the clock, the campaign, the catalog, the tally."""

    rng: random.Random
    now: dt.datetime
    campaign: Campaign
    benefits: list[Any]
    advisors: dict[int, Staff]
    members: list[Member] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def seed_history(days: int = HISTORY_DAYS, seed: int = 7) -> dict[str, int]:
    """A month of enrolments, activations, points earned, spent and expired, tier upgrades, red
    packets, benefit use and ratings, referrals, notifications and complaints, so that every chart
    of the dashboard shows data. Real rows: members, ledger, tiers, targets and complaints through
    their services; the rest as the services would have left them. Skipped when it ran before."""
    if services.find_by_phone(HISTORY_PHONE.format(1)) is not None:
        return {}
    today, now = business_today(), utcnow()
    dealers = list(db.session.scalars(sa.select(Dealer).order_by(Dealer.code)))
    advisors = {s.dealer_id: s for s in db.session.scalars(sa.select(Staff).where(Staff.role == "sales_advisor"))}
    for month in {today.replace(day=1), (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)}:
        for dealer in dealers:
            master_data.set_target(dealer, None, 60, now, month=month)
            if dealer.id in advisors:
                master_data.set_target(dealer, advisors[dealer.id], 45, now, month=month)
    catalog = benefit_catalog.in_force()
    campaign = Campaign(
        code="DEMO-RP",
        name="入会红包 · 冬季",
        status="active",
        budget_fen=300_000,
        amount_fen=888,
        starts_at=business_day_start(today - dt.timedelta(days=days)),
        ends_at=business_day_start(today + dt.timedelta(days=30)),
        channels=["official"],
        send_name="一汽大众",
        wishing="欢迎入会",
        act_name="入会红包",
        remark="demo",
    )
    db.session.add(campaign)
    db.session.flush()
    history = _History(
        rng=random.Random(seed),  # noqa: S311 - demo data, not a secret
        now=now,
        campaign=campaign,
        benefits=list(catalog.benefits) if catalog is not None else [],
        advisors=advisors,
    )
    for back in range(days, -1, -1):
        day = today - dt.timedelta(days=back)
        for _n in range(history.rng.randint(4, 9)):
            _history_member(history, history.rng.choice(dealers), day)
        db.session.flush()
    history.counts["expired_points"] = expiry.expire_due(now=now).points
    return history.counts


def _history_member(history: _History, dealer: Dealer, day: dt.date) -> None:
    rng, now = history.rng, history.now
    moment = business_day_start(day) + dt.timedelta(hours=rng.randint(9, 20), minutes=rng.randint(0, 59))
    bought = rng.random() < 0.6
    activated_at = moment + dt.timedelta(days=rng.randint(0, 5)) if bought else moment
    activated = (not bought or rng.random() < 0.7) and activated_at <= now
    history.count("members")
    advisor = history.advisors.get(dealer.id)
    member = services.create_member(
        channel="purchase" if bought else rng.choice(("advisor_qr", "miniapp", "referral")),
        status="active" if activated else "pre_enrolled",
        phone=HISTORY_PHONE.format(history.counts["members"]),
        name="演示会员",
        city=dealer.city,
        enrolling_dealer_id=dealer.id,
        enrolling_staff_id=advisor.id if advisor and rng.random() < 0.8 else None,
        enrolled_at=moment,
        activated_at=activated_at if activated else None,
    )
    history.members.append(member)
    _history_points(member, moment, rng, now)
    if rng.random() < 0.2:
        tier = "platinum" if rng.random() < 0.25 else "gold"
        policy.change_tier(policy.get_state(member.id), tier, "upgrade", 20_000, moment + dt.timedelta(hours=1))
    if rng.random() < 0.5:
        _history_red_packet(history, member, day, moment)
    if history.benefits and rng.random() < 0.35:
        _history_booking(history, member, dealer, moment)
    if len(history.members) > 5 and rng.random() < 0.3:
        _history_referral(history, member, dealer, moment)
    _history_notifications(history, member, moment)
    if rng.random() < 0.12:
        complaint = complaint_services.log_complaint(
            member.id,
            category=rng.choice(HISTORY_COMPLAINTS),
            description="演示投诉",
            status="open",
            resolution=None,
            actor="demo",
        )
        complaint.created_at = moment + dt.timedelta(hours=4)
        history.count("complaints")


def _history_red_packet(history: _History, member: Member, day: dt.date, moment: dt.datetime) -> None:
    amount = history.rng.choice((588, 888, 1888))
    grant = RedPacketGrant(
        campaign_id=history.campaign.id,
        member_id=member.id,
        openid=f"demo-openid-{member.id}",
        amount_fen=amount,
        status=history.rng.choice(("sent", "received", "received")),
        business_date=day,
        sent_at=moment + dt.timedelta(minutes=2),
    )
    db.session.add(grant)
    history.campaign.committed_fen += amount
    history.count("red_packets")


def _history_booking(history: _History, member: Member, dealer: Dealer, moment: dt.datetime) -> None:
    benefit = history.rng.choice(history.benefits)
    rating = history.rng.choice((3, 4, 5, 5, 5)) if history.rng.random() < 0.7 else None
    booked = Booking(
        member_id=member.id,
        request_id=f"demo-history-{member.id}",
        benefit_id=benefit.id,
        benefit_code=benefit.code,
        dealer_id=dealer.id,
        status="delivered",
        paid_with="quota",
        year_start=to_business(moment).date().replace(month=1, day=1),
        created_at=moment,
        delivered_at=moment + dt.timedelta(hours=2),
        rating=rating,
        rated_at=moment + dt.timedelta(hours=3) if rating else None,
    )
    db.session.add(booked)
    history.count("bookings")


def _history_referral(history: _History, member: Member, dealer: Dealer, moment: dt.datetime) -> None:
    rng, reached = history.rng, {}
    for stage, after_days, chance in (("test_drive_at", 1, 0.6), ("ordered_at", 3, 0.5), ("delivered_at", 7, 0.6)):
        if rng.random() >= chance:
            break
        reached[stage] = min(moment + dt.timedelta(days=after_days), history.now)
    referral = Referral(
        referrer_member_id=rng.choice(history.members[:-1]).id,
        referee_member_id=member.id,
        code="DEMO",
        dealer_id=dealer.id,
        milestone=("lead", "test_drive", "order", "delivery")[len(reached)],
        attributed_at=moment,
        expires_at=moment + dt.timedelta(days=90),
        **reached,
    )
    db.session.add(referral)
    history.count("referrals")


def _history_notifications(history: _History, member: Member, moment: dt.datetime) -> None:
    sent_at = moment + dt.timedelta(hours=1)
    for kind, channel in HISTORY_KINDS:
        if history.rng.random() < 0.4:
            notice = Notification(
                member_id=member.id,
                kind=kind,
                channel=channel,
                dedupe_key=f"demo-history:{member.id}:{kind}",
                status=history.rng.choice(HISTORY_STATES),
                payload={},
                created_at=sent_at,
                due_at=sent_at,
                finished_at=sent_at + dt.timedelta(minutes=1),
            )
            db.session.add(notice)
            history.count("notifications")


def _history_earn(member: Member, points: int, what: str, source_type: str, at: dt.datetime) -> None:
    key = f"demo-history:{member.id}:{what}"
    earning = ledger.Earning(
        member_id=member.id, currency="reward", points=points, idempotency_key=key, source_type=source_type
    )
    ledger.earn(earning, at=at)


def _history_points(member: Member, moment: dt.datetime, rng: random.Random, now: dt.datetime) -> None:
    """A purchase's points, for some a redemption, and for some an old lot that has expired."""
    earned = rng.choice((800, 1_200, 2_000, 3_500))
    _history_earn(member, earned, "purchase", "vehicle.delivered", moment)
    later = moment + dt.timedelta(days=rng.randint(1, 20))
    if later < now and rng.random() < 0.5:
        ledger.spend(
            member.id,
            rng.randint(1, earned // 100) * 50,
            idempotency_key=f"demo-history:{member.id}:spend",
            source_type="redemption",
            at=later,
        )
    if rng.random() < 0.25:
        # Earned 25 months before: expired at the end of last month (24 months' validity).
        _history_earn(member, rng.choice((100, 200, 400)), "old", "service.completed", moment - dt.timedelta(days=775))
