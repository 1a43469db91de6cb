"""Application factory: settings → infrastructure → each package registers itself → CLI.

No business logic here. A package joins the app through ``register(app)`` in its ``__init__``
(blueprints, CLI, event subscribers, periodic jobs) and its tables through ``app.models``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from flask import Flask

from app.config import install as install_settings
from app.config import load_settings


def _packages() -> tuple[ModuleType, ...]:
    """The packages that make up the service, lower layers first (ARCHITECTURE.md)."""
    from app import (
        api,
        benefits,
        campaigns,
        care,
        complaints,
        console,
        crm,
        dealers,
        mall,
        members,
        operators,
        points,
        referrals,
        reporting,
        sync,
        tiers,
        wechat,
    )

    lower_first = (
        api,
        dealers,
        operators,
        tiers,
        points,
        members,
        mall,
        campaigns,
        care,
        complaints,
        benefits,
        referrals,
        crm,
        reporting,
    )
    return (*lower_first, sync, wechat, console)


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app from ``LOYALTY_*`` environment variables (``overrides`` is for tests)."""
    from app import cli, models  # noqa: F401 - models: every table is mapped before anything runs
    from app.core import after_commit, audit, audit_chain, http, i18n, logs, ratelimit, security
    from app.extensions import db, init_redis
    from app.jobs import drain

    settings = load_settings(overrides=overrides)
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
        OPENAPI_SWAGGER_UI_URL="/static/vendor/swagger-ui/",  # vendored; served only if API_DOCS
    )
    http.trust_proxies(app, settings.PROXY_HOPS)
    logs.configure(settings.LOG_LEVEL, json=settings.json_logs)
    security.init_app(app)
    db.init_app(app)
    after_commit.init_session_factory(db.session_factory)
    audit.init_session_factory(db.session_factory)
    audit_chain.init_session_factory(db.session_factory)
    init_redis(app)
    i18n.init_app(app)
    ratelimit.init_app(app)
    http.init_app(app)
    drain.init_app(app)
    for package in _packages():
        package.register(app)
    cli.register_commands(app)
    return app
