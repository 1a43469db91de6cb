"""REST channel: health, DMS webhook, mini-app and staff APIs. Documented at /api/openapi.json."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

from app.core.http import LoyaltyApi

BIGINT_MAX = 2**63 - 1


class RowIdConverter(IntegerConverter):
    """``<id:name>``: a positive row id that fits PostgreSQL's bigint (larger ones are a plain 404)."""

    def __init__(self, map, *args, **kwargs):  # werkzeug passes the url map first
        super().__init__(map, min=1, max=BIGINT_MAX)


def init_app(app: Flask, api: LoyaltyApi) -> None:
    app.url_map.converters["id"] = RowIdConverter
    api.register_converter(
        RowIdConverter, lambda _: {"type": "integer", "format": "int64", "minimum": 1, "maximum": BIGINT_MAX}
    )
    from app.api import cs, cs_members, dms, enrollment_qr, health, miniapp, miniapp_points, program, staff

    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "Back office: POST /api/v1/cs/sessions"}
    )
    api.spec.components.security_scheme(
        "miniappSession", {"type": "http", "scheme": "bearer", "description": "Mini-app: POST /api/v1/sessions"}
    )
    blueprints = (
        health.blp,
        dms.blp,
        miniapp.blp,
        miniapp_points.blp,
        staff.blp,
        cs.blp,
        cs_members.blp,
        enrollment_qr.blp,
        program.blp,
    )
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
