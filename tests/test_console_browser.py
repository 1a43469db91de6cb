"""The console in real Chromium (Debian's /usr/bin/chromium driven by Playwright; no browser
download) against a live server on the test PostgreSQL: the scenarios of SPEC §12 an agent, a
supervisor and a dealer manager walk through. Screenshots of each page at 1366×768 go to
tests/artifacts/screenshots/ (gitignored; CI keeps them as artifacts)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from app import demo
from app.care import callbacks
from app.care.models import CallbackTask
from app.core.clock import business_today
from app.core.db import db
from app.core.models import AuditEntry
from app.dealers.models import Dealer
from app.members import services
from app.members.models import MemberMerge
from app.points import queries
from app.points.models import AdjustmentRequest
from app.reporting import dashboard, rollup
from tests import factories
from tests.console_helpers import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}

if not CHROMIUM.exists() and os.environ.get("LOYALTY_REQUIRE_SERVICES") != "1":
    pytest.skip("needs Debian's chromium (apt-get install -y chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api") if os.environ.get("LOYALTY_REQUIRE_SERVICES") != "1" else None
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

PHONE_OURS, PHONE_THEIRS = "13800000101", "13800000202"


@pytest.fixture(scope="module")
def live_server(app: Flask) -> Iterator[str]:
    """The test app served over HTTP on a free loopback port, one request at a time."""
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), (
        "LOYALTY_REQUIRE_SERVICES=1: /usr/bin/chromium must be installed (apt-get install -y chromium)"
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def people(app: Flask) -> dict[str, str]:
    """Two dealers with a customer each, and an operator of every role; committed for the server."""
    with app.app_context():
        ours, theirs = factories.dealer(code="D0101"), factories.dealer(code="D0201")
        names = {}
        for phone, dealer, name in ((PHONE_OURS, ours, "张伟"), (PHONE_THEIRS, theirs, "王芳")):
            member = factories.member(status="active", enrolling_dealer_id=dealer.id, phone=phone, name=name)
            services.record_consent(member, policy_version="2026.1", granted=["dealer_sharing"], channel="miniapp")
            factories.vehicle(owner=member, selling_dealer_id=dealer.id)
            names[phone] = member.member_no
        factories.operator("agent", username="agent")
        factories.operator("supervisor", username="supervisor")
        factories.operator("dealer_manager", dealer_id=ours.id, username="d0101")
        db.session.commit()
        return names


def _page(browser: Browser, errors: list[str]) -> Page:
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    page = context.new_page()
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def _sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/console/")
    expect(page).to_have_url(f"{base}/console/sign-in?next=/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("operator")).to_be_visible()


def _audit(app: Flask, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def test_an_agent_finds_a_member_by_phone_sees_it_masked_reveals_it_and_finds_the_audit_row(
    app, live_server, browser, people
):
    errors: list[str] = []
    page = _page(browser, errors)
    page.goto(f"{live_server}/console/sign-in")
    _shot(page, "01-sign-in")
    _sign_in(page, live_server, "agent")
    _shot(page, "02-lookup")
    page.select_option("select[name=kind]", "phone")
    page.fill("input[name=q]", PHONE_OURS)
    page.click("form.row button[type=submit]")
    expect(page.get_by_test_id("member-no")).to_have_text(people[PHONE_OURS])
    expect(page.get_by_test_id("phone")).to_have_text("138****0101")
    expect(page.get_by_test_id("name")).to_have_text("张*")
    _shot(page, "03-member-masked")

    page.click("details.reveal summary")
    page.select_option("select[name=reason_code]", "caller_verification")
    page.fill("input[name=note]", "来电核实身份")
    page.click("details.reveal button[type=submit]")
    expect(page.get_by_test_id("phone")).to_have_text(PHONE_OURS)
    expect(page.get_by_test_id("name")).to_have_text("张伟")
    _shot(page, "04-member-revealed")

    page.click("a[data-tab=audit]")
    trail = page.get_by_test_id("audit-trail")
    expect(trail).to_contain_text("caller_verification: 来电核实身份")
    expect(trail).to_contain_text("operator:agent")
    _shot(page, "05-audit-trail")
    for tab in ("vehicles", "tier", "ledger", "complaints", "wechat"):
        page.click(f"a[data-tab={tab}]")
        expect(page.get_by_test_id(f"tab-{tab}")).to_be_visible()
        _shot(page, f"06-tab-{tab}")
    assert [row.reason for row in _audit(app, "member.revealed")] == ["caller_verification: 来电核实身份"]
    assert errors == []


def test_a_dealer_manager_cannot_find_another_dealers_member(app, live_server, browser, people):
    errors: list[str] = []
    page = _page(browser, errors)
    _sign_in(page, live_server, "d0101")
    page.fill("input[name=q]", PHONE_THEIRS)
    page.click("form.row button[type=submit]")
    expect(page.get_by_test_id("no-results")).to_be_visible()
    _shot(page, "07-dealer-not-found")
    page.goto(f"{live_server}/console/members/{people[PHONE_THEIRS]}")
    expect(page.locator("main")).not_to_contain_text("王")
    page.goto(f"{live_server}/console/?kind=phone&q={PHONE_OURS}")
    expect(page.get_by_test_id("member-no")).to_have_text(people[PHONE_OURS])
    refused = [row for row in _audit(app, "member.lookup") if (row.details or {}).get("refused")]
    assert [row.actor_id for row in refused] == ["operator:d0101"]


def test_an_agent_requests_1500_points_and_a_supervisor_approves_in_another_browser(app, live_server, browser, people):
    errors: list[str] = []
    agent = _page(browser, errors)
    _sign_in(agent, live_server, "agent")
    member_no = people[PHONE_OURS]
    agent.goto(f"{live_server}/console/members/{member_no}?tab=ledger")
    agent.click("details.action summary")
    agent.fill("details.action input[name=points]", "1500")
    agent.select_option("details.action select[name=reason_code]", "complaint_compensation")
    agent.fill("details.action input[name=note]", "交车延误补偿")
    agent.click("details.action button[type=submit]")
    expect(agent.locator(".flash")).to_be_visible()
    expect(agent.get_by_test_id("pending-adjustments")).to_contain_text("1500")
    _shot(agent, "08-adjustment-requested")

    supervisor = _page(browser, errors)  # a second browser context: another person, another session
    _sign_in(supervisor, live_server, "supervisor")
    supervisor.click("nav >> text=审批")
    row = supervisor.locator("tr[data-adjustment]")
    expect(row).to_contain_text(member_no)
    expect(row).to_contain_text("1500")
    _shot(supervisor, "09-approval-queue")
    row.locator("button[value=approve]").click()
    expect(supervisor.locator(".flash")).to_be_visible()
    expect(supervisor.locator("tr[data-adjustment]")).to_have_count(0)

    agent.reload()
    expect(agent.get_by_test_id("available")).to_have_text("1500")
    _shot(agent, "10-ledger-after-approval")
    with app.app_context():
        adjustment = db.session.scalars(sa.select(AdjustmentRequest)).one()
        assert (adjustment.status, adjustment.requested_by, adjustment.decided_by) == (
            "applied",
            "operator:agent",
            "operator:supervisor",
        )
        member = services.find_by_member_no(member_no)
        assert queries.balance(member.id).available == 1500
    assert errors == []


def test_a_form_posted_without_the_csrf_token_is_refused(app, live_server, browser, people):
    errors: list[str] = []
    page = _page(browser, errors)
    _sign_in(page, live_server, "agent")
    member_no = people[PHONE_OURS]
    forged = page.context.request.post(
        f"{live_server}/console/members/{member_no}/freeze", form={"reason": "forged"}, max_redirects=0
    )
    assert forged.status == 400
    page.goto(f"{live_server}/console/members/{member_no}")
    expect(page.get_by_test_id("member-status")).to_have_text("正常")
    _shot(page, "11-after-forged-post")
    assert _audit(app, "member.frozen") == []


def test_an_agent_logs_a_complaint_and_sees_it_in_the_top_10_in_english(app, live_server, browser, people):
    errors: list[str] = []
    page = _page(browser, errors)
    _sign_in(page, live_server, "agent")
    member_no = people[PHONE_OURS]
    page.goto(f"{live_server}/console/members/{member_no}?tab=complaints&lang=en")
    page.click("details.action summary")
    page.select_option("details.action select[name=category]", "points_missing")
    page.fill("details.action textarea[name=description]", "Service points from 1 Dec not credited")
    _shot(page, "12-complaint-form-en")
    page.click("details.action button[type=submit]")
    expect(page.locator(".flash")).to_have_text("Complaint logged.")
    expect(page.get_by_test_id("tab-complaints")).to_contain_text("Service points from 1 Dec not credited")
    page.click("nav >> text=Complaints top 10")
    report = page.get_by_test_id("complaint-report")
    expect(report).to_contain_text("Points missing")
    _shot(page, "13-complaint-report-en")
    page.goto(f"{live_server}/console/members/{member_no}?tab=ledger")
    _shot(page, "14-ledger-en")
    assert [row.details["category"] for row in _audit(app, "complaint.logged")] == ["points_missing"]
    assert errors == []


def test_an_agent_claims_notes_and_closes_a_callback_task_in_the_queue(app, live_server, browser, people):
    with app.app_context():
        member = services.find_by_member_no(people[PHONE_OURS])
        callbacks.open_task(member.id, "low_rating", "booking-1")
        db.session.commit()
    errors: list[str] = []
    page = _page(browser, errors)
    _sign_in(page, live_server, "agent")
    page.click("header nav >> text=回访任务")
    row = page.locator("tr[data-task]")
    expect(row).to_contain_text(people[PHONE_OURS])
    expect(row).to_contain_text("权益低评分")
    _shot(page, "15-callback-queue")
    row.locator("button[type=submit]").click()
    expect(page.locator(".flash")).to_have_text("已领取该回访任务。")
    row = page.locator("tr[data-task]")
    row.locator("input[name=body]").fill("无人接听，18点后再打")
    row.locator("form[action$='/notes'] button").click()
    expect(page.get_by_test_id("task-note")).to_contain_text("无人接听，18点后再打")
    _shot(page, "16-callback-noted")
    row = page.locator("tr[data-task]")
    row.locator("select[name=outcome]").select_option("resolved")
    row.locator("input[name=note]").fill("会员已改约下周保养")
    row.locator("form[action$='/close'] button").click()
    expect(page.locator(".flash")).to_contain_text("已联系，已解决")
    expect(page.get_by_test_id("task-outcome")).to_contain_text("会员已改约下周保养")
    _shot(page, "17-callback-closed")
    with app.app_context():
        task = db.session.scalars(sa.select(CallbackTask)).one()
        assert (task.status, task.outcome) == ("closed", "resolved")
    assert [row.actor_id for row in _audit(app, "callback_task.closed")] == ["operator:agent"]
    assert errors == []


def test_an_agent_requests_a_merge_and_a_supervisor_approves_it_in_another_browser(app, live_server, browser, people):
    with app.app_context():
        duplicate = factories.member(status="active", phone="13800000303", name="张伟")
        db.session.commit()
        duplicate_no = duplicate.member_no
    member_no = people[PHONE_OURS]
    errors: list[str] = []
    agent = _page(browser, errors)
    _sign_in(agent, live_server, "agent")
    agent.goto(f"{live_server}/console/members/{member_no}?tab=merges")
    agent.click("details.action summary")
    agent.fill("details.action input[name=other_member_no]", duplicate_no)
    agent.fill("details.action input[name=reason]", "同一车主两个账号")
    _shot(agent, "18-merge-request-form")
    agent.click("details.action button[type=submit]")
    expect(agent.locator(".flash")).to_be_visible()
    expect(agent.get_by_test_id("merge-requests")).to_contain_text(duplicate_no)

    supervisor = _page(browser, errors)  # a second browser context: another person, another session
    _sign_in(supervisor, live_server, "supervisor")
    supervisor.click("header nav >> text=合并申请")
    request_card = supervisor.locator("article[data-merge]")
    expect(request_card.get_by_test_id("merge-side")).to_have_count(2)
    expect(request_card).to_contain_text("138****0101")
    expect(request_card).to_contain_text("138****0303")
    expect(request_card).not_to_contain_text("13800000303")
    _shot(supervisor, "19-merge-queue")
    request_card.locator("button[value=approve]").click()
    expect(supervisor.locator(".flash")).to_have_text("会员已合并。")
    expect(supervisor.get_by_test_id("no-merges")).to_be_visible()

    agent.goto(f"{live_server}/console/members/{duplicate_no}")  # the merged-away number opens the survivor
    expect(agent.get_by_test_id("member-no")).to_have_text(member_no)
    _shot(agent, "20a-after-merge")
    with app.app_context():
        merge = db.session.scalars(sa.select(MemberMerge)).one()
        assert (merge.status, merge.requested_by, merge.decided_by) == (
            "applied",
            "operator:agent",
            "operator:supervisor",
        )
    assert errors == []


@pytest.fixture
def demo_month(app: Flask) -> None:
    """The demo data and its month of history, rolled up like ``make run`` does; an HQ operator
    and a dealer manager of D0101 with the test password."""
    with app.app_context():
        demo.seed()
        demo.seed_history()
        db.session.commit()
        today = business_today()
        rollup.backfill(today - dt.timedelta(days=35), today)
        dealer = db.session.scalars(sa.select(Dealer).where(Dealer.code == "D0101")).one()
        factories.operator("operator", username="hq")
        factories.operator("dealer_manager", dealer_id=dealer.id, username="mgr0101")
        db.session.commit()


def _chart_data(page: Page, name: str) -> dict:
    return json.loads(page.locator(f"#data-{name}").text_content() or "{}")


def test_the_dashboard_draws_every_chart_with_data_and_a_csv_downloads(app, live_server, browser, demo_month):
    errors: list[str] = []
    page = _page(browser, errors)
    _sign_in(page, live_server, "hq")
    page.click("nav >> text=数据看板")
    expect(page).to_have_url(re.compile(r"/console/dashboard$"))
    for name in dashboard.CHARTS:
        chart = page.get_by_test_id(f"chart-{name}")
        expect(chart).to_have_attribute("data-rendered", "true")
        expect(chart.locator("canvas")).to_have_count(1)
        numbers = [value for row in _chart_data(page, name)["rows"] for value in row[1:]]
        assert any(numbers), f"{name}: the demo month shows no figure"
    page.screenshot(path=str(SCREENSHOTS / "30-dashboard-hq.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click("[data-testid=csv-new_members]")
    download = download_info.value
    lines = Path(download.path()).read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "日期,新增会员,日目标"
    assert len(lines) == 1 + dashboard.DEFAULT_DAYS
    shown = _chart_data(page, "new_members")["rows"]
    assert [line.split(",")[:2] for line in lines[1:]] == [[row[0], str(row[1])] for row in shown]
    assert [row.subject_id for row in _audit(app, "dashboard.exported")] == ["new_members"]

    page.goto(f"{live_server}/console/dashboard?lang=en")
    expect(page.locator("h2").first).to_have_text("New members per day")
    page.locator("input[name=from]").fill((business_today() - dt.timedelta(days=6)).isoformat())
    page.click("[data-testid=date-range] button[type=submit]")
    expect(page.get_by_test_id("chart-points")).to_have_attribute("data-rendered", "true")
    assert len(_chart_data(page, "points")["rows"]) == 7
    _shot(page, "31-dashboard-week-en")
    assert errors == []


def test_a_dealer_manager_sees_only_his_dealers_figures(app, live_server, browser, demo_month):
    errors: list[str] = []
    page = _page(browser, errors)
    _sign_in(page, live_server, "mgr0101")
    page.click("nav >> text=数据看板")
    expect(page.locator("main")).to_contain_text("仅本店数据")
    dealers = [row[0] for row in _chart_data(page, "new_members_by_dealer")["rows"]]
    assert len(dealers) == 1 and dealers[0].startswith("D0101")
    assert all(row[0].startswith("SA0101") for row in _chart_data(page, "new_members_by_advisor")["rows"])
    everyone = sum(row[1] for row in _chart_data(page, "new_members")["rows"])
    with app.app_context():
        hq = sum(row[1] for row in dashboard.new_members(dashboard.period(None, None), dashboard.Scope()).rows)
    assert 0 < everyone < hq
    _shot(page, "32-dashboard-dealer-manager")
    assert errors == []
