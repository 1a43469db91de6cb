"""Application factory: settings → extensions → blueprints → CLI. No business logic here."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.config import Settings, load_settings
from app.config import install as install_settings


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app from ``LOYALTY_*`` environment variables (``overrides`` is for tests)."""
    settings: Settings = load_settings(overrides=overrides)
    app = Flask(__name__, static_folder="../static", static_url_path="/static")
    install_settings(app, settings)
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        MAX_CONTENT_LENGTH=settings.MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
        API_TITLE="Car-owner loyalty API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
    )

    from app.core import after_commit, http, i18n, ratelimit, security

    http.trust_proxies(app, settings.PROXY_HOPS)
    from app.extensions import db, init_redis

    http.configure_logging(settings.LOG_LEVEL)
    security.init_app(app)
    db.init_app(app)
    after_commit.init_session_factory(db.session_factory)
    init_redis(app)
    i18n.init_app(app)
    ratelimit.init_app(app)
    api = http.LoyaltyApi(app)  # one per app: flask-smorest keeps the OpenAPI spec on the Api object
    http.init_app(app, api)

    from app import api as rest_api
    from app import jobs

    rest_api.init_app(app, api)

    from app.wechat import callback, sandbox

    app.register_blueprint(callback.blp)
    sandbox.init_app(app)
    _import_domain_modules()

    from app.cli import register_commands

    register_commands(app)
    return app


def _import_domain_modules() -> None:
    """Import modules that register models, event handlers and program settings at import time."""
    import app.campaigns.models
    import app.care.models
    import app.care.notify
    import app.care.subscriptions
    import app.core.audit
    import app.core.inbox
    import app.core.program
    import app.dealers.models
    import app.dealers.staff_binding
    import app.members.models
    import app.members.sessions
    import app.members.vehicle_claims
    import app.operators.models
    import app.points.adjustments
    import app.points.models
    import app.points.rule_models
    import app.points.settlement
    import app.sync.dms_handlers
    import app.tiers.jobs
    import app.tiers.models
    import app.wechat.deferred
    import app.wechat.pay
    import app.wechat.qrcodes  # noqa: F401
