"""`flask demo walkthrough care`: the demo members' reminders planned today and sent through the
sandbox with the real rules, on PostgreSQL (the suite's database) and on SQLite like `make run`."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
import time_machine

from app.care import rules
from app.care.models import Notification
from app.core.audit import AuditEntry
from app.core.clock import BUSINESS_TZ
from app.core.db import db
from app.members.services import find_by_phone
from app.points import expiry
from tests.care_helpers import at_daytime

ROOT = Path(__file__).resolve().parent.parent
NIGHT = dt.datetime(2026, 12, 2, 22, 30, tzinfo=BUSINESS_TZ)


def _outcomes() -> dict[str, tuple[str, str]]:
    """Phone → (kind, status by channel) of the care members' reminders."""
    rows = db.session.execute(
        sa.select(Notification.member_id, Notification.kind, Notification.status, Notification.channel).where(
            Notification.kind.in_(["birthday", "points_expiring", "tier_at_risk"])
        )
    ).all()
    phones = {find_by_phone(phone).id: phone for phone in ("13900000004", "13900000005", "13900000006")}
    return {phones[row.member_id]: (row.kind, f"{row.status} by {row.channel}") for row in rows}


def _expiry_sms(fakes) -> list[dict]:
    return [call for call in fakes.sms.sent() if call["template_code"] == "SMS_POINTS_EXPIRING"]


def test_walkthrough_plans_and_sends_each_demo_reminder_once(app, app_ctx, fakes):
    runner = app.test_cli_runner()
    with at_daytime():
        first = runner.invoke(args=["demo", "walkthrough", "care"])
        assert first.exit_code == 0, first.output
        assert _outcomes() == {
            "13900000004": ("birthday", "sent by official_template"),  # follows the service account
            "13900000005": ("points_expiring", "sent by sms"),  # no WeChat: falls back to SMS
            "13900000006": ("tier_at_risk", "sent by official_template"),
        }
        assert sorted(call["touser"] for call in fakes.official_account.templates()) == [
            "demo-openid-13900000004",
            "demo-openid-13900000006",
        ]
        (sms,) = _expiry_sms(fakes)
        assert (sms["phone"], sms["params"]["detail"]) == ("13900000005", "800 积分")
        assert "周杰" in first.output and "sent by official_template" in first.output
        assert "sms.send" in first.output and "…0005" in first.output

        again = runner.invoke(args=["demo", "walkthrough", "care"])
    assert again.exit_code == 0, again.output
    assert "0 new row(s)" in again.output and "3. flask care send-due: 0 handled" in again.output
    assert len(fakes.official_account.templates()) == 2 and len(_expiry_sms(fakes)) == 1  # nothing twice


def test_demo_dates_follow_the_calendar(app, app_ctx, fakes):
    """Seeded one day, walked through a month later (the points it made to expire have expired since):
    still a birthday today, points due in 7 days and a tier at risk."""
    runner = app.test_cli_runner()
    with time_machine.travel(dt.datetime(2026, 11, 2, 10, 0, tzinfo=BUSINESS_TZ), tick=True):
        assert runner.invoke(args=["demo", "seed"]).exit_code == 0
    with time_machine.travel(dt.datetime(2026, 11, 20, 3, 0, tzinfo=BUSINESS_TZ), tick=True):
        assert expiry.expire_due().lots == 1  # the nightly expiry took the demo's expiring points
    with at_daytime():
        result = runner.invoke(args=["demo", "walkthrough", "care"])
    assert result.exit_code == 0, result.output
    assert {kind: outcome for kind, outcome in _outcomes().values()} == {
        "birthday": "sent by official_template",
        "points_expiring": "sent by sms",
        "tier_at_risk": "sent by official_template",
    }
    assert find_by_phone("13900000004").birth_month_day == 1202


def test_at_night_the_quiet_hours_hold_them_unless_lifted_for_the_run(app, app_ctx, fakes):
    runner = app.test_cli_runner()
    with time_machine.travel(NIGHT, tick=True):
        held = runner.invoke(args=["demo", "walkthrough", "care"])
        assert held.exit_code == 0, held.output
        assert "inside the quiet hours 21:00–08:00" in held.output and "--lift-quiet-hours" in held.output
        assert set(_outcomes().values()) == {
            ("birthday", "planned by official_template"),
            ("points_expiring", "planned by official_template"),
            ("tier_at_risk", "planned by official_template"),
        }
        assert fakes.official_account.templates() == [] and _expiry_sms(fakes) == []

        lifted = runner.invoke(args=["demo", "walkthrough", "care", "--lift-quiet-hours"])
    assert lifted.exit_code == 0, lifted.output
    assert len(fakes.official_account.templates()) == 2 and len(_expiry_sms(fakes)) == 1
    assert rules.QUIET_HOURS.value() == {"start": "21:00", "end": "08:00"}  # put back
    reasons = db.session.scalars(sa.select(AuditEntry.reason).where(AuditEntry.action.like("program%"))).all()
    assert reasons == ["demo walkthrough", "demo walkthrough done"]


def test_walkthrough_on_sqlite_like_make_run(tmp_path):
    """The embedded stack of `make run`: development settings, SQLite, the sandbox."""
    env = {
        **os.environ,
        "LOYALTY_ENV": "development",
        "LOYALTY_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
        "LOYALTY_LOG_LEVEL": "WARNING",
    }
    for name in [name for name in env if name.startswith("LOYALTY_TEST_")]:
        env.pop(name)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    result = subprocess.run(
        [*flask, "demo", "walkthrough", "care", "--lift-quiet-hours"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "birthday         sent by official_template" in result.stdout
    assert "points_expiring  sent by sms" in result.stdout
    assert "tier_at_risk     sent by official_template" in result.stdout
