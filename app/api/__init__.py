"""The REST channel's shared parts: who is calling the mini-app (``auth``) and the health probes.
Each package registers its own blueprints; all of them are in the OpenAPI document."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Liveness and readiness probes."""
    from app.api import health
    from app.core.http import api_of

    api_of(app).register_blueprint(health.blp)
