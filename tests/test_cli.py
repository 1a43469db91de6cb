"""CLI commands: member lookup (masked, audited), demo data, program settings."""

import json

import pytest
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.db import db
from tests import factories


def test_members_show_masks_personal_data_and_audits_the_read(app, app_ctx):
    member = factories.member(phone="13812345678", name="王小明")
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["members", "show", "13812345678", "--reason", "caller asked"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.output)
    assert (card["member_no"], card["phone"], card["name"]) == (member.member_no, "138****5678", "王**")
    assert "13812345678" not in result.output
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "member.read"))
    assert (entry.subject_id, entry.reason, entry.actor_type) == (str(member.id), "caller asked", "cli")


def test_members_show_by_member_number_and_reveal_needs_a_reason(app, app_ctx):
    member = factories.member(phone="13812345678")
    db.session.commit()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["members", "show", member.member_no, "--reveal"]).exit_code == 2
    revealed = runner.invoke(args=["members", "show", member.member_no, "--reveal", "--reason", "ticket 42"])
    assert json.loads(revealed.output)["phone"] == "13812345678"
    assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.reason == "ticket 42")) == "member.revealed"


def test_a_miss_is_an_error_and_still_audited(app, app_ctx):
    result = app.test_cli_runner().invoke(args=["members", "show", "13800000000"])
    assert result.exit_code == 1
    assert "no member" in result.output
    assert db.session.scalar(sa.select(AuditEntry.details)) == {"miss": True}


def test_demo_seed_is_idempotent(app, app_ctx):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert "'dealers': 4" in first.output and "'members': 3" in first.output and "'care_members': 3" in first.output
    assert "'benefit_catalogs': 1, 'slots': 70" in first.output  # the demo can book at D0101
    second = runner.invoke(args=["demo", "seed"])
    expected = (
        "{'dealers': 0, 'staff': 0, 'members': 0, 'operators': 0, 'benefit_catalogs': 0, 'slots': 0,"
        " 'mall_items': 0, 'care_members': 0}"
    )
    assert expected in second.output
    from app.members.services import find_by_phone
    from app.points.queries import balance

    demo_member = find_by_phone("13900000001")
    assert balance(demo_member.id).available == 2_699  # ¥219,900 car + welcome gift, earned by the rules


def test_program_settings_can_be_changed_with_the_right_type_only(app, app_ctx):
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["program", "set", "enrollment.attribution_days", "120", "--reason", "Q4 push"])
    assert ok.exit_code == 0, ok.output
    assert "enrollment.attribution_days" in runner.invoke(args=["program", "list"]).output
    bad = runner.invoke(args=["program", "set", "enrollment.attribution_days", '"many"', "--reason", "x"])
    assert bad.exit_code != 0
    from app.core import tunables

    assert tunables.get("enrollment.attribution_days") == 120
    changed = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "program_setting.changed"))
    assert changed.details == {"from": 90, "to": 120}


def test_serve_starts_the_server_with_no_transaction_left_open(app, app_ctx, monkeypatch):
    """`make run` serves from the CLI's own app context: a transaction left open there would hold
    SQLite's write lock (BEGIN IMMEDIATE) for as long as the server runs, and every write would fail."""
    import werkzeug.serving

    import app.cli as cli_module

    sessions_open_at_start = []
    monkeypatch.setattr(cli_module, "start_embedded_scheduler", lambda _app: None)  # the name serve calls
    monkeypatch.setattr(
        werkzeug.serving, "run_simple", lambda *args, **kwargs: sessions_open_at_start.append(db.session.registry.has())
    )
    result = app.test_cli_runner().invoke(args=["serve", "--port", "5999"])
    assert result.exit_code == 0, result.output
    assert "policy_version" in result.output and sessions_open_at_start == [False]


@pytest.mark.parametrize(
    ("args", "host", "says"),
    [
        ([], "127.0.0.1", "loopback only"),
        (["--host", "0.0.0.0"], "0.0.0.0", "reachable from other machines"),
    ],
)
def test_serve_binds_to_loopback_unless_told_otherwise_and_says_so(app, app_ctx, monkeypatch, args, host, says):
    import werkzeug.serving

    import app.cli as cli_module

    bound = []
    monkeypatch.setattr(cli_module, "start_embedded_scheduler", lambda _app: None)  # the name serve calls
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda h, *_a, **_k: bound.append(h))
    result = app.test_cli_runner().invoke(args=["serve", "--port", "5999", *args])
    assert result.exit_code == 0, result.output
    assert bound == [host]
    assert says in result.output


def test_benefit_commands_seed_draft_publish_and_import_slots(app, app_ctx, tmp_path):
    import datetime as dt

    from app.benefits import catalog
    from tests import factories

    runner = app.test_cli_runner()
    assert "published" in runner.invoke(args=["benefits", "seed"]).output
    assert "already in force" in runner.invoke(args=["benefits", "seed"]).output
    assert "home_test_drive" in runner.invoke(args=["benefits", "list"]).output
    drafted = runner.invoke(args=["benefits", "draft", "2027"])
    draft_id = int(drafted.output.split()[2])
    assert runner.invoke(args=["benefits", "publish", str(draft_id)]).exit_code == 0
    assert catalog.in_force().id == draft_id
    factories.dealer(code="D0901")
    day = dt.date.today() + dt.timedelta(days=5)
    path = tmp_path / "slots.csv"
    path.write_text(f"date,start,end,service_type,capacity\n{day},09:00,10:00,test_drive,2\n", encoding="utf-8")
    imported = runner.invoke(args=["benefits", "import-slots", "D0901", str(path)])
    assert "1 slots created" in imported.output, imported.output
    assert "0/2" in runner.invoke(args=["benefits", "slots", "D0901", "--day", day.isoformat()]).output
    path.write_text("date,start\n", encoding="utf-8")
    refused = runner.invoke(args=["benefits", "import-slots", "D0901", str(path)])
    assert refused.exit_code != 0 and "date,start,end,service_type,capacity" in refused.output


def test_the_booking_walkthrough_books_cancels_rebooks_checks_in_and_rates_low(app, app_ctx):
    result = app.test_cli_runner().invoke(args=["demo", "walkthrough", "booking"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()[-9:]
    assert [line.split(".")[0] for line in lines] == ["1", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert lines[0].endswith("is a Gold member: 1 free home test drive left this year")
    assert lines[1].endswith(": 0 left") and lines[2].endswith("1 left again") and lines[3].endswith("0 left")
    assert "delivered" in lines[4] and lines[5].endswith("rated it 2")
    assert "callback task #" in lines[6] and "(low_rating, open)" in lines[6]
    assert "(car-bound, quota): partner order LB" in lines[7] and " issued, service code " in lines[7]
    assert " delivered, a rating request follows" in lines[8]
