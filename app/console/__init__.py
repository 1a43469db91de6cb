"""The customer-service console: server-rendered pages under ``/console/`` for agents,
supervisors, dealer member managers and program operators (SPEC §12), on the domain services."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """The console blueprint, CSRF on its forms, its session cookie, the member-core tabs."""
    from app.config import settings_of
    from app.console import dashboard, jobs, member_tabs, rules, views
    from app.console.registry import NavItem, add_nav
    from app.core.i18n import _l, domain

    # CSRF is checked by the console's own before_request (the JSON API and webhooks have none).
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the token lives as long as the session
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_SECURE", settings_of(app).is_production)
    views.csrf.init_app(app)
    # Templates translate through the project's catalogs (zh_CN, en), like the Python code does.
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(domain.gettext, domain.ngettext, newstyle=True)  # type: ignore[attr-defined]
    app.register_blueprint(views.bp)
    member_tabs.register_core_tabs()
    add_nav(NavItem("console.lookup", _l("Look up a member"), order=10))
    add_nav(NavItem("console.approvals", _l("Approvals"), roles=("supervisor",), order=20))
    add_nav(NavItem("console.complaint_report", _l("Complaints top 10"), roles=views.HQ, order=30))
    add_nav(NavItem("console.dashboard_page", _l("Dashboard"), roles=dashboard.ROLES, order=35))
    add_nav(NavItem("console.rule_sets", _l("Rule sets"), roles=rules.READERS, order=40))
    add_nav(NavItem("console.campaigns", _l("Campaigns"), roles=rules.READERS, order=50))
    jobs.init_app(app)
    add_nav(NavItem("rq_dashboard.queues_overview", _l("Jobs"), roles=(jobs.ROLE,), order=90))
