"""REST channel: health, DMS webhook, mini-app and staff APIs. Documented at /api/openapi.json."""

from __future__ import annotations

from flask import Flask

from app.core.http import LoyaltyApi


def init_app(app: Flask, api: LoyaltyApi) -> None:
    from app.api import dms, health

    api.register_blueprint(health.blp)
    api.register_blueprint(dms.blp)
