"""Dealer-club import: dedupe by phone and VIN, consent leads, provenance, errors in the operator's
language, dry run, resume after an interruption (also of a killed process), one run per file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import gateways
from app.core import imports
from app.core.db import db
from app.core.errors import ValidationFailed
from app.core.models import ImportRowError, ImportRun
from app.crm import delivery
from app.crm.models import CrmOutboxEntry
from app.members import club_import
from app.members.identifiers import is_member_number, normalize_cn_mobile
from app.members.models import Consent, ConsentLead, Member, Ownership, Vehicle
from app.members.services import find_by_phone, phone_index, record_consent
from app.points.models import PointAccount
from tests import factories
from tests.conftest import PG_URL, REDIS_URL, run_concurrently

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["姓名", "手机号", "性别", "生日", "车架号", "车牌", "同意", "营销同意", "入会日期"]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *rows])
    return path


def options(dealer_code: str, **fields) -> club_import.ImportOptions:
    return club_import.ImportOptions(dealer_code=dealer_code, actor=("cli", "tester"), **fields)


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.mark.postgres
def test_a_club_file_dedupes_by_phone_and_vin_and_keeps_consent_provenance(app_ctx, tmp_path):
    dealer = factories.dealer("D0101", city="深圳")
    known = factories.member(name="王五")  # has a name: the club's must not overwrite it
    nameless = factories.member(name=None)
    phoneless_owner = factories.member(phone=None, name=None, status="active")
    owned_by_phoneless = factories.vehicle(owner=phoneless_owner)
    owned_by_known = factories.vehicle(owner=known)
    new_car, other_car = factories.vin(), factories.vin()
    rows = [
        ["张三", "+86 138-0013-8000", "男", "1985-03-07", new_car, "粤B12345", "是", "是", "2021/5/1"],  # 2 new
        ["张三", "13800138000", "", "", "", "", "是", "", ""],  # 3: same phone again → matched, no new member
        ["王五改", known.phone, "", "1970-01-01", "", "", "是", "否", ""],  # 4 known → matched, name kept
        ["李四", nameless.phone, "女", "", "", "", "Y", "", ""],  # 5 known without name → name filled
        ["赵六", "13700000001", "", "", owned_by_phoneless.vin, "", "是", "", ""],  # 6 phoneless owner adopts
        ["钱七", "13700000002", "", "", owned_by_known.vin, "", "是", "", ""],  # 7 car of another member
        ["孙八", "13700000003", "", "", new_car, "", "是", "", ""],  # 8 car of row 2's person
        ["周九", "13700000004", "", "", "", "", "否", "", ""],  # 9 no consent → lead
        ["周九", "13700000004", "", "", "", "", "否", "", ""],  # 10 the same lead again
        ["", known.phone, "", "", "", "", "否", "", ""],  # 11 known member, no consent → nothing
        ["吴十", "12345", "", "", "", "", "是", "", ""],  # 12 bad phone
        ["郑一", "13700000005", "", "", "LSVAU2180N2183295", "", "是", "", ""],  # 13 bad check digit
        ["冯二", "13700000006", "", "1990-02-30", "", "", "是", "", ""],  # 14 no such date
        ["陈三", "13700000007", "", "", "", "", "也许", "", ""],  # 15 consent unreadable
        ["褚四", "13700000008", "", "", other_car, "", "是", "", "2020-01-01"],  # 16 new, with a car
    ]
    path = write_csv(tmp_path / "club.csv", rows)

    outcome = club_import.run_import(path, options("D0101", chunk_rows=4))

    assert outcome.counts == {
        "created": 2,  # rows 2 and 16
        "matched": 4,  # row 3 (row 2's person again), 4 and 5 (by phone), 6 (by the car of a phoneless owner)
        "leads": 1,
        "lead_repeats": 1,
        "known_without_consent": 1,
        "errors": 6,
    }
    errors = {(e.row_no, e.code) for e in outcome.errors}
    assert errors == {
        (7, "vin_other_owner"),
        (8, "vin_other_owner"),
        (12, "phone_invalid"),
        (13, "vin_check_digit"),
        (14, "date_invalid"),
        (15, "consent_invalid"),
    }
    zhang = find_by_phone("13800138000")
    assert zhang is not None and is_member_number(zhang.member_no)
    assert (zhang.name, zhang.gender, zhang.birthday) == ("张三", "male", dt.date(1985, 3, 7))
    assert (zhang.enrollment_channel, zhang.status, zhang.enrolling_dealer_id, zhang.city) == (
        "import",
        "pre_enrolled",
        dealer.id,
        "深圳",
    )
    assert zhang.enrolled_at == dt.datetime(2021, 5, 1, tzinfo=dt.UTC)
    assert db.session.get(PointAccount, zhang.id) is not None
    assert [v.vin for v in zhang.current_vehicles] == [new_car]
    assert zhang.current_vehicles[0].plate == "粤B12345"
    consents = {c.purpose: c for c in db.session.scalars(sa.select(Consent).where(Consent.member_id == zhang.id))}
    assert set(consents) == {"privacy_policy", "marketing"}
    assert all(c.channel == "dealer_club" and c.granted and c.policy_version == "2026.1" for c in consents.values())
    assert consents["privacy_policy"].stated_at == dt.datetime(2021, 5, 1, tzinfo=dt.UTC)

    db.session.refresh(known)
    db.session.refresh(nameless)
    db.session.refresh(phoneless_owner)
    assert known.name == "王五" and known.birthday == dt.date(1970, 1, 1)  # blank filled, name kept
    assert nameless.name == "李四" and nameless.gender == "female"
    assert phoneless_owner.phone == "13700000001"  # the car's owner had no phone: it is this person
    assert find_by_phone("13700000002") is None  # refused: the car is someone else's
    assert find_by_phone("13700000008").current_vehicles[0].vin == other_car
    # Personal data is stored encrypted; the raw column holds no plaintext.
    raw_name = db.session.execute(sa.text("SELECT name FROM members WHERE id = :id"), {"id": zhang.id}).scalar_one()
    assert "张三" not in raw_name
    lead = db.session.scalar(sa.select(ConsentLead))
    assert (lead.phone, lead.name, lead.dealer_id, lead.status) == ("13700000004", "周九", dealer.id, "open")
    assert count(ConsentLead) == 1
    assert find_by_phone("13700000004") is None  # a lead is not a member
    assert db.session.scalar(sa.select(ImportRun.status).where(ImportRun.id == outcome.run_id)) == "done"
    created = db.session.scalar(
        sa.select(sa.func.count()).where(Member.enrollment_channel == "import", Member.enrolling_dealer_id == dealer.id)
    )
    assert created == 2


@pytest.mark.postgres
def test_a_dry_run_counts_and_reports_but_changes_nothing(app, app_ctx, tmp_path):
    factories.dealer("D0102")
    path = write_csv(
        tmp_path / "club.csv",
        [["甲", "13700000011", "", "", "", "", "是", "", ""], ["乙", "bad", "", "", "", "", "是", "", ""]],
    )
    before = (count(Member), count(ConsentLead), count(ImportRun))
    result = app.test_cli_runner().invoke(
        args=["members", "import", "dealer-club", str(path), "--dealer", "D0102", "--dry-run", "--locale", "en"]
    )
    assert result.exit_code == 0, result.output
    assert "dry run, nothing changed" in result.output and '"created": 1' in result.output
    assert (count(Member), count(ConsentLead), count(ImportRun)) == before
    report = (tmp_path / "club.csv.errors.csv").read_text(encoding="utf-8-sig").splitlines()
    assert report == [
        "Row,Column,Code,Reason",
        "3,手机号/phone,phone_invalid,This is not a valid mainland China mobile number.",
    ]


@pytest.mark.postgres
def test_the_error_report_speaks_the_operators_language(app_ctx, tmp_path):
    factories.dealer("D0103")
    path = write_csv(tmp_path / "club.csv", [["甲", "13700000012", "", "", "LSVAU2180N218329", "", "是", "", ""]])
    outcome = club_import.run_import(path, options("D0103", locale="zh_CN"))
    zh, en = io.StringIO(), io.StringIO()
    club_import.write_report(outcome.errors, "zh_CN", zh)
    club_import.write_report(outcome.errors, "en", en)
    assert zh.getvalue().splitlines()[1].startswith("2,车架号/vin,vin_length,")
    assert "车架号" in zh.getvalue().splitlines()[1].split(",", 3)[3]  # the reason itself is Chinese
    assert en.getvalue().splitlines()[1] == "2,车架号/vin,vin_length,A VIN has exactly 17 characters."
    assert db.session.scalar(sa.select(ImportRowError.code)) == "vin_length"


@pytest.mark.postgres
def test_a_nul_byte_inside_a_cell_spoils_that_cell_not_the_import(app_ctx, tmp_path):
    factories.dealer("D0104")
    rows = [
        ["张\x00三", "13700000021", "", "", "", "", "是", "", ""],  # the name: kept, the NUL replaced
        ["李四", "137000\x0000022", "", "", "", "", "是", "", ""],  # the phone: fails its check
        ["王五", "13700000023", "", "", "LSVWE7SW9HW6SVG0U", "粤B\x0012345", "是", "", ""],  # a plain column
    ]
    outcome = club_import.run_import(write_csv(tmp_path / "club.csv", rows), options("D0104"))
    assert (outcome.rows_done, [error.row_no for error in outcome.errors]) == (3, [3])
    assert find_by_phone("13700000021").name == "张\ufffd三" and find_by_phone("13700000023") is not None
    assert find_by_phone("13700000022") is None


@pytest.mark.postgres
def test_english_headers_work_and_a_missing_required_column_names_the_field(app_ctx, tmp_path):
    factories.dealer("D0104")
    english = write_csv(tmp_path / "en.csv", [["Li Lei", "13700000013", "yes"]], header=["Name", "Mobile", "Consent"])
    assert club_import.run_import(english, options("D0104")).counts["created"] == 1
    assert find_by_phone("13700000013").name == "Li Lei"
    no_consent = write_csv(tmp_path / "bad.csv", [["Li Lei", "13700000014"]], header=["Name", "Phone"])
    with pytest.raises(ValidationFailed) as refused:
        club_import.run_import(no_consent, options("D0104"))
    assert set(refused.value.fields) == {"consent"}


@pytest.mark.postgres
def test_a_newer_consent_decision_is_never_overridden_by_the_clubs(app_ctx, tmp_path):
    factories.dealer("D0105")
    member = factories.member()
    record_consent(member, policy_version="2026.1", granted=[], withdrawn=["marketing"], channel="miniapp")
    db.session.flush()
    path = write_csv(tmp_path / "club.csv", [["甲", member.phone, "", "", "", "", "是", "是", ""]])
    club_import.run_import(path, options("D0105"))
    rows = db.session.execute(
        sa.select(Consent.purpose, Consent.granted, Consent.channel).where(Consent.member_id == member.id)
    ).all()
    assert ("marketing", True, "dealer_club") not in rows  # the member's own withdrawal stands
    assert [r for r in rows if r.channel == "dealer_club"] == []  # privacy policy already accepted too


@pytest.mark.postgres
def test_a_failed_chunk_leaves_nothing_and_running_the_file_again_resumes_after_the_last_good_chunk(
    app_ctx, tmp_path, monkeypatch
):
    factories.dealer("D0106")
    rows = [[f"会员{i}", f"1370001{i:04d}", "", "", "", "", "是", "", ""] for i in range(10)]
    path = write_csv(tmp_path / "club.csv", rows)
    original, calls = club_import.apply_rows, []

    def fail_third(*args, **kwargs):
        calls.append(args[0][0][0])
        result = original(*args, **kwargs)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return result

    monkeypatch.setattr(club_import, "apply_rows", fail_third)
    with pytest.raises(RuntimeError):
        club_import.run_import(path, options("D0106", chunk_rows=3))
    db.session.rollback()
    run = db.session.scalar(sa.select(ImportRun))
    assert (run.rows_done, run.counts["created"]) == (6, 6)
    assert count(Member) == 6  # the third chunk's rows went with its rollback

    monkeypatch.setattr(club_import, "apply_rows", original)
    outcome = club_import.run_import(path, options("D0106", chunk_rows=3))
    assert (outcome.rows_done, outcome.counts["created"], outcome.status) == (10, 10, "done")
    assert count(Member) == 10
    assert calls == [2, 5, 8]  # the rerun started at row 8, not at the top
    with pytest.raises(imports.RunAlreadyDone):
        club_import.run_import(path, options("D0106"))


def test_the_fast_mobile_check_agrees_with_libphonenumber():
    rng = random.Random(3)
    samples = [f"1{rng.randrange(10**10):010d}" for _ in range(3000)]
    samples += ["+86 138-0013-8000", "0086 13800138000", "8613800138000", "138 0013 8000", "10086", "23800138000"]
    # full-width digits come out in ASCII; a tab or a line break inside the number is refused, as the full parse does
    samples += ["１３８００１３８０００", "138\t0013\t8000"]
    samples += ["138\n0013\n8000", "138\u30000013\u30008000", "(138)00138000"]
    for raw in samples:
        assert club_import.fast_cn_mobile(raw) == normalize_cn_mobile(raw), raw


@pytest.mark.postgres
def test_the_cli_generates_a_sample_and_imports_it_with_a_progress_bar_and_a_report(app, app_ctx, tmp_path):
    factories.dealer("D0107")
    path = tmp_path / "sample.csv"
    result = app.test_cli_runner().invoke(
        args=["members", "import", "dealer-club", str(path), "--dealer", "D0107", "--generate-sample", "400"]
    )
    assert result.exit_code == 0, result.output
    assert "importing" in result.output and "400/400 rows" in result.output  # the bar, as a log shows it
    report = list(csv.reader((tmp_path / "sample.csv.errors.csv").open(encoding="utf-8-sig")))
    assert report[0] == ["行", "列", "代码", "原因"] or report[0] == ["Row", "Column", "Code", "Reason"]
    assert {row[2] for row in report[1:]} == {"phone_invalid"}  # every 50th sample row
    assert len(report) - 1 == 8
    run = db.session.scalar(sa.select(ImportRun))
    assert run.rows_done == 400 and run.counts["created"] + run.counts["matched"] > 350


def _committed_dealer(code: str) -> None:
    factories.dealer(code)
    db.session.commit()


def _members_by_phone() -> dict[str, int]:
    rows = db.session.execute(sa.text("SELECT phone_index, count(*) FROM members GROUP BY phone_index")).all()
    return dict(rows)


@pytest.mark.committed
def test_two_processes_on_the_same_file_import_each_row_once(app, tmp_path):
    with app.app_context():
        _committed_dealer("D0201")
    rows = [[f"会员{i}", f"1370002{i:04d}", "", "", factories.vin(), "", "是", "是", ""] for i in range(600)]
    path = write_csv(tmp_path / "club.csv", rows)

    def run(_i: int):
        with app.app_context():
            try:
                return club_import.run_import(path, options("D0201", chunk_rows=50)).counts
            finally:
                db.session.remove()

    results = run_concurrently(2, run)
    assert any(isinstance(r, dict) for r in results), results
    assert all(isinstance(r, dict | imports.RunBusy | imports.RunAlreadyDone) for r in results), results
    with app.app_context():
        assert count(Member) == 600
        assert count(Vehicle) == count(Ownership) == 600
        assert db.session.scalar(sa.select(sa.func.count()).where(Consent.purpose == "privacy_policy")) == 600
        run_row = db.session.scalar(sa.select(ImportRun))
        assert (run_row.rows_done, run_row.counts["created"], run_row.status) == (600, 600, "done")


def _probe(path: Path, dealer: str, chunk: int, crash_at: int | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "tests.club_import_probe", PG_URL, REDIS_URL, str(path), dealer, str(chunk)]
    return subprocess.run(
        [*args, *([str(crash_at)] if crash_at else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _assert_imported_exactly_once(app, rows: list[list[str]], expected_leads: int) -> None:
    with app.app_context():
        per_phone = _members_by_phone()
        consenting = {phone_index(r[1]) for r in rows if r[6] == "是"}
        assert set(per_phone) == consenting  # nothing skipped, nothing extra
        assert set(per_phone.values()) == {1}
        assert count(Vehicle) == count(Ownership) == sum(1 for r in rows if r[6] == "是" and r[4])
        privacy = db.session.execute(
            sa.text("SELECT member_id, count(*) FROM consents WHERE purpose = 'privacy_policy' GROUP BY member_id")
        ).all()
        assert len(privacy) == len(consenting) and {n for _m, n in privacy} == {1}
        assert count(ConsentLead) == expected_leads
        run_row = db.session.scalar(sa.select(ImportRun))
        assert run_row.status == "done" and run_row.rows_done == len(rows)
        assert run_row.counts["created"] == len(consenting) and run_row.counts["leads"] == expected_leads
        assert count(ImportRowError) == run_row.counts["errors"] == 0
        _assert_each_member_reaches_the_crm_once(app, set(per_phone))


def _assert_each_member_reaches_the_crm_once(app, phone_indexes: set[str]) -> None:
    """The chunks wrote one snapshot outbox row per member (none from a chunk that died), and the
    delivery sends each member to the fake CRM once."""
    outbox_rows = db.session.execute(
        sa.select(Member.phone_index, CrmOutboxEntry.kind, CrmOutboxEntry.seq).join(
            CrmOutboxEntry, CrmOutboxEntry.member_id == Member.id
        )
    ).all()
    assert sorted(phone for phone, _kind, _seq in outbox_rows) == sorted(phone_indexes)
    assert {(kind, seq) for _phone, kind, seq in outbox_rows} == {("snapshot", 1)}
    crm = gateways.crm(app)
    crm.reset()
    try:
        assert delivery.deliver_until_idle() == len(phone_indexes)
        numbers = set(db.session.scalars(sa.select(Member.member_no).where(Member.phone_index.in_(phone_indexes))))
        assert dict(crm.accepted) == {number: [1] for number in numbers}
        assert (crm.duplicates, crm.out_of_order) == (0, [])
    finally:
        crm.reset()


def _crash_rows(prefix: str, n: int) -> list[list[str]]:
    return [
        [
            f"会员{i}",
            f"{prefix}{i:04d}",
            "",
            "",
            factories.vin() if i % 2 else "",
            "",
            "否" if i % 7 == 0 else "是",
            "",
            "",
        ]
        for i in range(n)
    ]


@pytest.mark.committed
def test_an_import_process_killed_inside_a_chunk_and_run_again_makes_no_duplicates_and_skips_nothing(app, tmp_path):
    with app.app_context():
        _committed_dealer("D0202")
    rows = _crash_rows("1370003", 700)
    path = write_csv(tmp_path / "club.csv", rows)

    crashed = _probe(path, "D0202", chunk=100, crash_at=3)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    with app.app_context():
        assert db.session.scalar(sa.select(ImportRun.rows_done)) == 200  # chunk 3 died uncommitted
        db.session.remove()
    finished = _probe(path, "D0202", chunk=100)
    assert finished.returncode == 0, finished.stderr[-2000:]
    _assert_imported_exactly_once(app, rows, expected_leads=sum(1 for r in rows if r[6] == "否"))


@pytest.mark.committed
def test_an_import_process_killed_with_sigkill_at_a_random_moment_resumes_cleanly(app, tmp_path):
    with app.app_context():
        _committed_dealer("D0203")
    rows = _crash_rows("1370004", 3000)
    path = write_csv(tmp_path / "club.csv", rows)
    args = [sys.executable, "-m", "tests.club_import_probe", PG_URL, REDIS_URL, str(path), "D0203", "100"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + 120
    reached = 0
    while time.monotonic() < deadline and reached < 500:
        with engine.connect() as connection:
            reached = connection.execute(sa.text("SELECT coalesce(max(rows_done), 0) FROM import_runs")).scalar_one()
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    engine.dispose()
    assert process.returncode == -signal.SIGKILL and reached >= 500
    finished = _probe(path, "D0203", chunk=100)
    assert finished.returncode == 0, finished.stderr[-2000:]
    _assert_imported_exactly_once(app, rows, expected_leads=sum(1 for r in rows if r[6] == "否"))


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    from app.members import club_uploads

    monkeypatch.setattr(club_uploads, "UPLOAD_DIR", tmp_path / "uploads")
    return tmp_path / "uploads"


def _csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8-sig")


@pytest.mark.postgres
def test_a_dealer_manager_uploads_their_clubs_file_and_follows_the_job(app_ctx, client, upload_dir):
    own, other = factories.dealer("D0801"), factories.dealer("D0802")
    _manager, token = factories.operator("dealer_manager", dealer_id=own.id)
    auth = {"Authorization": f"Bearer {token}", "Accept-Language": "en"}
    body = _csv_bytes(
        [["甲", "13700000801", "", "", "", "", "是", "", ""], ["乙", "999", "", "", "", "", "是", "", ""]]
    )

    refused = client.post(
        "/api/v1/cs/imports/dealer-club",
        data={"file": (io.BytesIO(body), "club.csv"), "dealer": "D0802"},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert refused.status_code == 403  # another dealer's club
    sent = client.post(
        "/api/v1/cs/imports/dealer-club",
        data={"file": (io.BytesIO(body), "我的俱乐部.csv")},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert sent.status_code == 202, sent.get_json()
    run_id = sent.get_json()["id"]
    assert sent.get_json()["dealer"] == "D0801" and sent.get_json()["file_name"] == "我的俱乐部.csv"

    status = client.get(f"/api/v1/cs/imports/{run_id}", headers=auth).get_json()
    assert (status["status"], status["rows_done"], status["counts"]["created"], status["counts"]["errors"]) == (
        "done",
        2,
        1,
        1,
    )
    assert find_by_phone("13700000801").enrolling_dealer_id == own.id
    report = client.get(f"/api/v1/cs/imports/{run_id}/errors.csv", headers=auth)
    assert report.status_code == 200 and report.mimetype == "text/csv"
    assert report.get_data(as_text=True).lstrip("\ufeff").splitlines()[1] == (
        "3,手机号/phone,phone_invalid,This is not a valid mainland China mobile number."
    )
    assert list(upload_dir.iterdir()) == []  # the stored file goes once imported

    again = client.post(
        "/api/v1/cs/imports/dealer-club",
        data={"file": (io.BytesIO(body), "club.csv")},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "import_done"
    _other_manager, other_token = factories.operator("dealer_manager", dealer_id=other.id)
    hidden = client.get(f"/api/v1/cs/imports/{run_id}", headers={"Authorization": f"Bearer {other_token}"})
    assert hidden.status_code == 404


@pytest.mark.postgres
def test_an_upload_without_a_file_or_without_required_columns_is_a_422_naming_the_field(app_ctx, client, upload_dir):
    dealer = factories.dealer("D0803")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    auth = {"Authorization": f"Bearer {token}"}
    missing = client.post("/api/v1/cs/imports/dealer-club", data={}, headers=auth, content_type="multipart/form-data")
    assert missing.status_code == 422 and "file" in missing.get_json()["error"]["fields"]
    no_consent = b"name,phone\nLi,13700000803\n"
    bad = client.post(
        "/api/v1/cs/imports/dealer-club",
        data={"file": (io.BytesIO(no_consent), "club.csv")},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422 and set(bad.get_json()["error"]["fields"]) == {"consent"}
    assert bad.get_json()["error"]["fields"]["consent"] == ["文件中没有此字段对应的列。"]  # zh_CN by default


def test_under_make_run_on_sqlite_a_sample_club_file_imports_with_progress_and_a_report(tmp_path):
    """The embedded SQLite set-up of ``make run`` runs the same set-based import (no COPY)."""
    env = {
        **os.environ,
        "LOYALTY_ENV": "development",
        "LOYALTY_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "LOYALTY_REDIS_URL": "memory://demo",
        "LOYALTY_JOBS_MODE": "eager",
        "LOYALTY_LOG_LEVEL": "WARNING",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*flask, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    assert run("db", "upgrade").returncode == 0
    assert run("demo", "seed").returncode == 0
    sample = tmp_path / "club.csv"
    done = run("members", "import", "dealer-club", str(sample), "--dealer", "D0101", "--generate-sample", "600")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "600/600 rows" in done.stdout and '"errors": 12' in done.stdout
    report = (tmp_path / "club.csv.errors.csv").read_text(encoding="utf-8-sig").splitlines()
    assert report[0] == "行,列,代码,原因" and len(report) == 13
    shown = run("members", "show", _first_phone(sample))
    assert shown.returncode == 0 and '"enrollment_channel": "import"' in shown.stdout
    again = run("members", "import", "dealer-club", str(sample), "--dealer", "D0101")
    assert again.returncode != 0 and "此文件已导入过" in again.stderr  # the default report language


def _first_phone(sample: Path) -> str:
    rows = csv.reader(sample.open(encoding="utf-8"))
    next(rows)
    return next(rows)[1]


@pytest.mark.postgres
def test_a_failed_upload_job_shows_failed_and_the_same_upload_resumes_it(app_ctx, client, upload_dir, monkeypatch):
    dealer = factories.dealer("D0804")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    auth = {"Authorization": f"Bearer {token}"}
    body = _csv_bytes([["甲", "13700000804", "", "", "", "", "是", "", ""]])

    def broken(*_args, **_kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(club_import, "apply_rows", broken)
    form = {"file": (io.BytesIO(body), "club.csv")}
    first = client.post("/api/v1/cs/imports/dealer-club", data=form, headers=auth, content_type="multipart/form-data")
    assert first.status_code == 202
    status = client.get(f"/api/v1/cs/imports/{first.get_json()['id']}", headers=auth).get_json()
    assert (status["status"], status["failure"]) == ("failed", "RuntimeError: database went away")

    monkeypatch.undo()
    form = {"file": (io.BytesIO(body), "club.csv")}
    again = client.post("/api/v1/cs/imports/dealer-club", data=form, headers=auth, content_type="multipart/form-data")
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    status = client.get(f"/api/v1/cs/imports/{first.get_json()['id']}", headers=auth).get_json()
    assert (status["status"], status["counts"]["created"]) == ("done", 1)


@pytest.mark.postgres
def test_a_file_that_is_not_csv_text_is_a_422_not_a_500(app_ctx, client, upload_dir):
    dealer = factories.dealer("D0805")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    binary = b"PK\x03\x04\x14\x00\x06\x00\x97\xff\xfe\x00\x00xl/workbook.xml"  # an .xlsx, say
    sent = client.post(
        "/api/v1/cs/imports/dealer-club",
        data={"file": (io.BytesIO(binary), "club.xlsx")},
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 422
    assert sent.get_json()["error"]["fields"] == {"file": ["The file is not CSV text (UTF-8 or GB18030)."]}


@pytest.mark.postgres
def test_imported_members_outbox_rows_follow_their_earlier_rows_in_order(app, app_ctx, tmp_path):
    """A member who already had outbox rows, met again in two chunks of the file: the chunks' snapshot
    rows take the next numbers, one per chunk, and the fake CRM gets them all in order, once."""
    factories.dealer("D0808")
    known = factories.member()
    db.session.commit()
    earlier = db.session.scalars(sa.select(CrmOutboxEntry.seq).where(CrmOutboxEntry.member_id == known.id)).all()
    rows = [
        ["", known.phone, "", "", "", "", "是", "是", ""],  # chunk 1: matched
        ["新人", "13700090001", "", "", "", "", "是", "", ""],  # chunk 1: created
        ["", known.phone, "", "", factories.vin(), "", "是", "", ""],  # chunk 2: matched again, a car
        ["", "13700090001", "", "", "", "", "是", "", ""],  # chunk 2: the new member again
    ]
    club_import.run_import(write_csv(tmp_path / "club.csv", rows), options("D0808", chunk_rows=2))
    newcomer = find_by_phone("13700090001")
    snapshots = db.session.execute(
        sa.select(CrmOutboxEntry.member_id, CrmOutboxEntry.seq)
        .where(CrmOutboxEntry.kind == "snapshot")
        .order_by(CrmOutboxEntry.member_id, CrmOutboxEntry.seq)
    ).all()
    last = max(earlier)
    assert [tuple(r) for r in snapshots] == [
        (known.id, last + 1),
        (known.id, last + 2),
        (newcomer.id, 1),
        (newcomer.id, 2),
    ]
    crm = gateways.crm(app)
    crm.reset()
    try:
        delivery.deliver_until_idle()
        assert crm.accepted[known.member_no] == [*sorted(earlier), last + 1, last + 2]
        assert crm.accepted[newcomer.member_no] == [1, 2]
        assert (crm.duplicates, crm.out_of_order) == (0, [])
    finally:
        crm.reset()


def test_a_nul_byte_in_the_dealer_code_or_file_name_is_no_500(app_ctx, client, upload_dir):
    """Found by the contract fuzz: PostgreSQL text cannot hold NUL."""
    dealer = factories.dealer("D0807")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    sent = client.post(
        "/api/v1/cs/imports/dealer-club",
        data={"file": (io.BytesIO(_csv_bytes([])), "club\x00.csv"), "dealer": "D08\x0007"},
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 202, sent.get_json()
    assert sent.get_json()["file_name"] == "club.csv"


@pytest.mark.postgres
def test_a_column_mapping_names_a_files_own_headers(app, app_ctx, tmp_path):
    factories.dealer("D0806")
    path = write_csv(tmp_path / "own.csv", [["13700000806", "同意了", "钱多多"]], header=["联系电话", "授权", "客户"])
    result = app.test_cli_runner().invoke(
        args=[
            *("members", "import", "dealer-club", str(path), "--dealer", "D0806"),
            *("--column", "phone=联系电话", "--column", "consent=授权", "--column", "name=客户"),
        ]
    )
    assert result.exit_code == 0, result.output
    assert '"errors": 1' in result.output  # "同意了" is not a yes/no the import reads
    report = (tmp_path / "own.csv.errors.csv").read_text(encoding="utf-8-sig").splitlines()
    assert report[1].startswith("2,同意/consent,consent_invalid,")
    unknown = app.test_cli_runner().invoke(
        args=["members", "import", "dealer-club", str(path), "--dealer", "D0806", "--column", "shoe_size=鞋码"]
    )
    assert unknown.exit_code == 1 and "shoe_size" in unknown.output
