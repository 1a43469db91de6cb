"""REST channel: health, DMS webhook, mini-app and staff APIs. Documented at /api/openapi.json."""

from __future__ import annotations

from flask import Flask

from app.core.http import LoyaltyApi


def init_app(app: Flask, api: LoyaltyApi) -> None:
    from app.api import cs, dms, enrollment_qr, health, program

    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for blueprint in (health.blp, dms.blp, cs.blp, enrollment_qr.blp, program.blp):
        api.register_blueprint(blueprint)
