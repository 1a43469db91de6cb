"""Dealer and staff master data from HQ: opening, moving and closing dealers; advisors joining,
moving and leaving (their QR codes stop enrolling, their members keep the attribution); monthly
targets; the newer HQ change wins, also under concurrency."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.core.models import AuditEntry
from app.dealers import master_data
from app.dealers.models import Dealer, EnrollmentTarget, Staff
from app.members.models import Member, WechatIdentity
from app.members.qr_enrollment import enroll_from_advisor_qr
from app.members.staff_mode import enrollment_figures
from tests import factories
from tests.conftest import run_concurrently

HQ = ("cli", "hq")
DEALER_HEADER = ["经销商代码", "经销商名称", "大区", "城市", "地址", "纬度", "经度", "状态", "月度目标"]
STAFF_HEADER = ["员工编号", "经销商代码", "姓名", "岗位", "状态", "离职日期", "月度目标"]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *rows])
    return path


def actions(subject_type: str) -> list[tuple[str, str]]:
    rows = db.session.execute(
        sa.select(AuditEntry.action, AuditEntry.subject_id).where(AuditEntry.subject_type == subject_type)
    )
    return sorted(tuple(r) for r in rows)


def identity(openid: str) -> WechatIdentity:
    row = WechatIdentity(app_kind="official", app_id="wx49f0ab532d5d035a", openid=openid)
    db.session.add(row)
    db.session.flush()
    return row


@pytest.mark.postgres
def test_the_dealer_master_file_opens_moves_and_closes_dealers_and_sets_targets(app, app_ctx, tmp_path):
    moving = factories.dealer("D0301", city="长春", region="north", address="旧地址")
    closing = factories.dealer("D0302")
    advisor = factories.staff(closing, "SA0302")
    path = write_csv(
        tmp_path / "dealers.csv",
        DEALER_HEADER,
        [
            ["D0303", "新店", "south", "广州", "天河路 1 号", "23.13", "113.26", "营业", "120"],  # opens
            ["D0301", moving.name, "north", "吉林", "新地址", "", "", "营业", ""],  # moves
            ["D0302", closing.name, closing.region, closing.city, "", "", "", "闭店", ""],  # closes
            ["D0304", "无城市", "south", "", "", "", "", "营业", ""],  # city missing
            ["D0305", "坏坐标", "south", "广州", "", "north", "", "营业", ""],  # latitude not a number
            ["D0306", "坏状态", "south", "广州", "", "", "", "maybe", ""],
        ],
    )
    result = app.test_cli_runner().invoke(args=["dealers", "import-master", str(path), "--kind", "dealers"])
    assert result.exit_code == 0, result.output
    assert '"created": 1, "updated": 2' in result.output and "3 rows refused" in result.output

    opened = db.session.scalar(sa.select(Dealer).where(Dealer.code == "D0303"))
    assert (opened.city, opened.latitude, opened.active) == ("广州", 23.13, True)
    db.session.refresh(moving)
    db.session.refresh(closing)
    db.session.refresh(advisor)
    assert (moving.city, moving.address, moving.active) == ("吉林", "新地址", True)
    assert (closing.active, closing.closed_on) == (False, utcnow().date())
    assert advisor.active is False  # a closed dealer's advisors stop enrolling
    target = db.session.scalar(sa.select(EnrollmentTarget).where(EnrollmentTarget.dealer_id == opened.id))
    assert (target.target, target.staff_id, target.month) == (120, None, utcnow().date().replace(day=1))
    assert actions("dealer") == [("dealer.closed", "D0302"), ("dealer.moved", "D0301"), ("dealer.opened", "D0303")]
    report = list(csv.reader((tmp_path / "dealers.csv.errors.csv").open(encoding="utf-8-sig")))
    assert [row[:3] for row in report[1:]] == [
        ["5", "城市/city", "missing"],
        ["6", "纬度/latitude", "number_invalid"],
        ["7", "状态/status", "status_invalid"],
    ]


@pytest.mark.postgres
def test_advisors_join_move_and_leave_and_a_leavers_members_keep_their_attribution(app, app_ctx, tmp_path):
    first, second = factories.dealer("D0401"), factories.dealer("D0402")
    leaving = factories.staff(first, "SA0401")
    moving = factories.staff(first, "SA0402")
    scanned = enroll_from_advisor_qr("SA0401", identity("o-before-leaving"), utcnow())
    assert scanned.outcome == "enrolled"
    member_id = scanned.member.id
    path = write_csv(
        tmp_path / "staff.csv",
        STAFF_HEADER,
        [
            ["SA0403", "D0402", "新顾问", "销售顾问", "在职", "", "30"],  # joins, with a target
            ["SA0402", "D0402", moving.name, "sales_advisor", "在职", "", ""],  # moves dealer
            ["SA0401", "D0401", leaving.name, "销售顾问", "离职", "2026-11-30", ""],  # leaves
            ["SA0404", "D9999", "无店", "销售顾问", "在职", "", ""],  # unknown dealer
            ["SA0405", "D0402", "无岗", "司机", "在职", "", ""],  # unknown role
        ],
    )
    outcome = master_data.import_master_file(path, "staff_master", actor=HQ, locale="en")
    assert (outcome.counts["created"], outcome.counts["updated"], outcome.counts["errors"]) == (1, 2, 2)
    assert {(e.row_no, e.code) for e in outcome.errors} == {(5, "unknown_dealer"), (6, "role_invalid")}

    db.session.refresh(leaving)
    db.session.refresh(moving)
    assert (leaving.active, leaving.left_on) == (False, dt.date(2026, 11, 30))
    assert moving.dealer_id == second.id and moving.active
    joined = db.session.scalar(sa.select(Staff).where(Staff.staff_code == "SA0403"))
    assert (joined.role, joined.dealer_id, joined.monthly_enrollment_target) == ("sales_advisor", second.id, 30)
    assert enrollment_figures(joined)["target"] == 30
    # The leaver's code no longer enrolls; the member they enrolled keeps the attribution.
    assert enroll_from_advisor_qr("SA0401", identity("o-after-leaving"), utcnow()).outcome == "invalid_code"
    member = db.session.get(Member, member_id)
    assert (member.enrolling_staff_id, member.enrolling_dealer_id) == (leaving.id, first.id)
    assert ("staff.left", "SA0401") in actions("staff") and ("staff.moved", "SA0402") in actions("staff")


@pytest.mark.postgres
def test_an_older_crm_change_never_overwrites_a_newer_one(app_ctx):
    factories.dealer("D0501")
    now = utcnow()
    record = {"staff_code": "SA0501", "dealer_code": "D0501", "name": "新名", "role": "sales_advisor"}
    assert master_data.apply_staff_change(record, changed_at=now, actor=HQ).outcome == "created"
    older = {**record, "name": "旧名", "status": "left"}
    applied = master_data.apply_staff_change(older, changed_at=now - dt.timedelta(minutes=5), actor=HQ)
    assert applied.outcome == "stale"
    staff = db.session.scalar(sa.select(Staff).where(Staff.staff_code == "SA0501"))
    assert (staff.name, staff.active) == ("新名", True)
    same = master_data.apply_staff_change(record, changed_at=now + dt.timedelta(minutes=1), actor=HQ)
    assert same.outcome == "unchanged"


@pytest.mark.postgres
def test_nobody_joins_a_closed_dealer(app_ctx):
    closed = factories.dealer("D0601", active=False)
    with pytest.raises(master_data.RecordProblem) as refused:
        master_data.apply_staff_change(
            {"staff_code": "SA0601", "dealer_code": closed.code, "name": "甲", "role": "sales_advisor"},
            changed_at=utcnow(),
            actor=HQ,
        )
    assert refused.value.code == "dealer_closed"


@pytest.mark.committed
def test_concurrent_crm_changes_to_one_new_advisor_make_one_row_with_the_newest_values(app):
    with app.app_context():
        factories.dealer("D0701")
        db.session.commit()
    base = utcnow()

    def apply(i: int) -> str:
        with app.app_context():
            try:
                record = {"staff_code": "SA0701", "dealer_code": "D0701", "name": f"版本{i}", "role": "sales_advisor"}
                outcome = master_data.apply_staff_change(record, changed_at=base + dt.timedelta(seconds=i), actor=HQ)
                db.session.commit()
                return outcome.outcome
            finally:
                db.session.remove()

    results = run_concurrently(6, apply)
    assert all(isinstance(r, str) for r in results), results
    assert results.count("created") == 1
    with app.app_context():
        rows = db.session.scalars(sa.select(Staff).where(Staff.staff_code == "SA0701")).all()
        assert [r.name for r in rows] == ["版本5"]  # the newest change, whatever order they ran in
