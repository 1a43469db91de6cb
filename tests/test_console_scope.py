"""Every console view requires a signed-in operator, declares who may use it and how it is scoped,
and a member view answers another dealer's manager like a miss while auditing the refusal. The
cases come from the URL map: a new view without a declaration, or not scoped, fails here."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.core.db import db
from app.core.models import AuditEntry
from app.operators.models import ROLES
from app.reporting.models import DailyMetric
from tests import factories
from tests.console_helpers import sign_in

PUBLIC = {"console.sign_in", "console.sign_out", "console.static"}


_URL_APP = create_app({"ENV": "test"})  # the URL map is the same for every instance


def _console_rules() -> list:
    """Read from an app built like the test app."""
    return sorted(
        (rule for rule in _URL_APP.url_map.iter_rules() if rule.endpoint.startswith("console.")),
        key=lambda rule: rule.endpoint,
    )


RULES = [rule for rule in _console_rules() if rule.endpoint not in PUBLIC]
#: Views showing figures (the dashboard): a dealer manager's are his dealer's only.
DEALER_RULES = [
    rule
    for rule in RULES
    if getattr(_URL_APP.view_functions[rule.endpoint], "console_access", {}).get("scope") == "dealer"
]


def _path(rule, member_no: str) -> str:
    path = re.sub(r"<member_no>", member_no, rule.rule)
    return re.sub(r"<[^>]+>", "1", path)


def _method(rule) -> str:
    return "GET" if "GET" in rule.methods else "POST"


@pytest.fixture
def no_csrf(app: Flask) -> Iterator[None]:
    """These tests are about sign-in and scope; CSRF has its own tests (test_console, the browser)."""
    app.config["WTF_CSRF_ENABLED"] = False
    yield
    app.config["WTF_CSRF_ENABLED"] = True


def test_the_url_map_has_the_console_views():
    endpoints = {rule.endpoint for rule in RULES}
    assert {"console.lookup", "console.member", "console.reveal", "console.adjust", "console.approvals"} <= endpoints


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.endpoint)
def test_every_console_view_declares_roles_and_scope(app, rule):
    access = getattr(app.view_functions[rule.endpoint], "console_access", None)
    assert access is not None, f"{rule.endpoint}: decorate it with console_view(roles..., scope=...)"
    assert set(access["roles"]) <= set(ROLES) and access["scope"] in ("member", "lookup", "queue", "operator", "dealer")
    if "<member_no>" in rule.rule:
        assert access["scope"] == "member", f"{rule.endpoint} takes a member: scope it as 'member'"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.endpoint)
def test_every_console_view_needs_a_signed_in_operator(client, app_ctx, no_csrf, rule):
    member = factories.member()
    response = client.open(_path(rule, member.member_no), method=_method(rule))
    assert response.status_code == 302
    assert "/console/sign-in" in response.headers["Location"]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.endpoint)
def test_every_member_view_hides_other_dealers_members_and_audits_the_refusal(app, client, app_ctx, no_csrf, rule):
    access = app.view_functions[rule.endpoint].console_access
    ours, theirs = factories.dealer(), factories.dealer()
    member = factories.member(enrolling_dealer_id=ours.id)
    factories.vehicle(owner=member, selling_dealer_id=ours.id)
    manager, _ = factories.operator("dealer_manager", dealer_id=theirs.id)
    sign_in(client, manager.username)
    response = client.open(_path(rule, member.member_no), method=_method(rule))
    if "dealer_manager" not in access["roles"]:
        assert response.status_code == 403
        return
    if access["scope"] != "member":
        assert response.status_code in (200, 302, 404, 422)
        return
    assert response.status_code == 404
    refused = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.actor_id == manager.actor, AuditEntry.subject_id == str(member.id))
    ).all()
    assert refused and all(row.details.get("refused") for row in refused)


@pytest.mark.parametrize("rule", [r for r in RULES if "<member_no>" in r.rule and "GET" in r.methods], ids=str)
def test_every_member_page_read_is_audited(client, app_ctx, rule):
    member = factories.member()
    agent, _ = factories.operator("agent")
    sign_in(client, agent.username)
    assert client.get(_path(rule, member.member_no)).status_code == 200
    reads = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "member.read", AuditEntry.subject_id == str(member.id))
    ).all()
    assert [row.actor_id for row in reads] == [agent.actor]


def test_the_dashboard_views_are_dealer_scoped():
    assert {rule.endpoint for rule in DEALER_RULES} == {"console.dashboard_page", "console.dashboard_csv"}


@pytest.mark.parametrize("rule", DEALER_RULES, ids=lambda rule: rule.endpoint)
def test_every_dealer_scoped_view_shows_a_dealer_manager_his_dealers_figures_only(app, client, app_ctx, no_csrf, rule):
    ours, theirs = factories.dealer(), factories.dealer()
    day = dt.date(2026, 11, 10)
    for dealer_id, value in ((ours.id, 1234), (theirs.id, 98765), (-1, 99999)):
        db.session.add(DailyMetric(metric="complaints", day=day, dealer_id=dealer_id, key="tier", value=value))
    db.session.flush()
    manager, _ = factories.operator("dealer_manager", dealer_id=ours.id)
    sign_in(client, manager.username)
    body = client.get(f"{_path(rule, '1').replace('/1.csv', '/complaints.csv')}?from={day}&to={day}")
    text = body.get_data(as_text=True)
    assert body.status_code == 200 and "1234" in text
    assert "98765" not in text and "99999" not in text
