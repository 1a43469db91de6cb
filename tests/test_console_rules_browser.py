"""The rule-set pages in real Chromium (the live server and browser of test_console_browser): an
operator drafts from the rules in force, is shown the fields of a bad rule, saves a good one,
simulates (figures and the ECharts chart), publishes; the campaign page and the job dashboard.
Screenshots go to tests/artifacts/screenshots/ (gitignored; CI keeps them)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from rq import Queue

from app.core.db import db
from app.extensions import rq_connection
from app.points.earning import forget_published_rule_sets
from app.points.models import RuleSet
from tests import dms_events, factories
from tests import test_console_browser as in_chromium
from tests.test_console_browser import _page, _shot, _sign_in
from tests.test_console_rules import BONUS, spring_campaign

#: The same module-scoped fixtures: one live server and one Chromium for this module too.
live_server, browser = in_chromium.live_server, in_chromium.browser

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.fixture
def seeded_rules_kept(app: Flask) -> Iterator[None]:
    """Rule sets are reference data the truncation between committed tests keeps: put them back."""
    with app.app_context():
        before = {row.id: (row.status, row.effective_to) for row in db.session.scalars(sa.select(RuleSet))}
        db.session.rollback()
    yield
    with app.app_context():
        db.session.execute(sa.delete(RuleSet).where(RuleSet.id.not_in(before)))
        for rule_set in db.session.scalars(sa.select(RuleSet)):
            rule_set.status, rule_set.effective_to = before[rule_set.id]
        db.session.commit()
        forget_published_rule_sets()


@pytest.fixture
def program(app: Flask, post_dms, seeded_rules_kept) -> None:
    """An operator, a serviced car (one stored DMS event to replay) and a campaign; committed."""
    with app.app_context():
        dealer = factories.dealer(code="D0101")
        factories.staff(dealer, code="SA0101")
        car = factories.vehicle(owner=factories.member(status="active"), selling_dealer_id=dealer.id)
        factories.operator("operator", username="hq")
        spring_campaign()
        db.session.commit()
        vin = car.vin
    assert post_dms(dms_events.service(vin, parts_fen=100_000, labour_fen=0)).status_code in (200, 202)


def test_an_operator_drafts_a_rule_set_fixes_a_bad_rule_simulates_and_publishes_it(app, live_server, browser, program):
    errors: list[str] = []
    page = _page(browser, errors)
    page.on("dialog", lambda dialog: dialog.accept())  # the publish confirmation
    _sign_in(page, live_server, "hq")
    page.click("nav >> text=规则集")
    _shot(page, "20-rule-sets")
    page.fill("form[data-testid=new-draft] input[name=name]", "Q1 保养活动")
    page.click("form[data-testid=new-draft] button[type=submit]")
    page.get_by_test_id("rule-set-status").wait_for()
    assert page.get_by_test_id("rule-set-status").inner_text() == "草稿"
    _shot(page, "21-rule-set-draft")

    bad = dict(BONUS, currency="gold")
    page.fill("textarea[data-rule=new]", json.dumps(bad, ensure_ascii=False, indent=2))
    page.click("form[data-testid=rules-form] button[type=submit]")
    marked = page.locator("ul.field-errors").first
    marked.wait_for()
    assert "currency: 必须是以下之一" in marked.inner_text()
    assert page.locator(".problem").is_visible()
    marked.scroll_into_view_if_needed()
    _shot(page, "22-rule-field-errors")

    box = page.locator("textarea[name=rule]").nth(page.locator("textarea[name=rule]").count() - 2)  # the bad one
    box.fill(json.dumps(BONUS, ensure_ascii=False, indent=2))
    page.click("form[data-testid=rules-form] button[type=submit]")
    page.locator(".flash").wait_for()
    assert page.locator("ul.field-errors").count() == 0

    page.click("form[data-testid=simulate] button[type=submit]")
    chart = page.get_by_test_id("simulation-chart")
    chart.locator("canvas").wait_for()
    assert chart.get_attribute("data-rendered") == "true"
    figures = page.get_by_test_id("simulation-figures")
    reward = figures.locator("tr[data-figure=reward_points] td").all_inner_texts()
    assert reward == ["100", "200", "100"]  # in force, this set, difference
    assert figures.locator("tr[data-figure=cost_fen] td").all_inner_texts() == ["20.00", "40.00", "20.00"]
    assert page.get_by_test_id("rule-set-status").inner_text() == "已模拟"
    _shot(page, "23-rule-set-simulated")

    page.click("form[data-testid=publish] button[type=submit]")
    page.locator(".flash").wait_for()
    assert page.get_by_test_id("rule-set-status").inner_text() == "已发布"
    assert page.get_by_test_id("effective-from").inner_text()
    _shot(page, "24-rule-set-published")
    with app.app_context():
        published = db.session.scalars(sa.select(RuleSet).where(RuleSet.name == "Q1 保养活动")).one()
        assert (published.status, published.published_by) == ("published", "operator:hq")
        assert "service_bonus" in {rule.code for rule in published.rules}

    page.click("nav >> text=红包活动")
    spring = page.locator("tr[data-campaign=SPRING]")
    assert spring.locator("[data-money=budget]").inner_text() == "1,000.00"
    _shot(page, "25-campaigns")
    # Chromium reports the refused form's 422 as a failed resource; nothing else may fail.
    assert [error for error in errors if "status of 422" not in error] == []

    with app.app_context():  # a job waiting in the app's RQ Redis (tests run jobs in-process)
        Queue("payments", connection=rq_connection()).enqueue("app.jobs.run_job", args=("nothing", ()))
    page.click("nav >> text=后台任务")
    page.locator("#queues >> text=payments").wait_for()
    _shot(page, "26-job-dashboard")
    page.context.close()  # the dashboard polls every few seconds: no request may reach later tests
