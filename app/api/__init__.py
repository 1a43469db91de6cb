"""The REST channel's shared parts: who is calling the mini-app (``auth``), the health probes and
/metrics.
Each package registers its own blueprints; all of them are in the OpenAPI document."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Liveness and readiness probes; Prometheus metrics."""
    from app.api import health, metrics
    from app.core.http import api_of

    api_of(app).register_blueprint(health.blp)
    metrics.init_app(app)
