"""The central member record (CRM): the outbox and its delivery, inbound CRM events (profile,
consent, merges), nightly reconciliation, the back-office sync state and merge requests."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """The CRM gateway (real, or the sandbox fake), the webhook and back-office blueprints, the event
    subscribers and inbound handlers, ``flask crm``, delivery and reconciliation jobs."""
    from app import gateways
    from app.config import settings_of
    from app.core.db import db
    from app.core.http import api_of
    from app.crm import api, cli, console, delivery, events, inbound, jobs, outbox, webhook_api  # noqa: F401 - events, inbound connect
    from app.gateways.crm_http import HttpCrm
    from app.gateways.fakes import FakeCrm
    from app.jobs.schedule import periodic

    outbox.init_session_factory(db.session_factory)
    settings = settings_of(app)
    if settings.crm_sandbox:
        journal = cli.SANDBOX_JOURNAL if settings.ENV == "development" else None
        gateways.install_crm(app, FakeCrm(journal))
    else:
        gateways.install_crm(app, HttpCrm(settings.CRM_URL, settings.CRM_SECRET, timeout=settings.CRM_HTTP_TIMEOUT))
    api_of(app).register_blueprint(webhook_api.blp)
    api_of(app).register_blueprint(api.blp)
    app.cli.add_command(cli.crm_cli)
    console.register_tabs()
    periodic(delivery.deliver_outbox, "* * * * *", "deliver the CRM outbox (per member in order)")
    periodic(jobs.reconcile_with_crm, "30 2 * * *", "reconcile members, tiers and balances with the CRM")
