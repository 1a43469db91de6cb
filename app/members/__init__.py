"""Members: enrollment, identities, consent, profile, vehicles and ownership, staff mode."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Mini-app member and staff-mode endpoints, their back office (sales leads, club imports),
    ``flask members``."""
    from app.core.http import api_of
    from app.members import api, cli, cs_api, import_api, leads_api, staff_api

    for blueprint in (api.blp, staff_api.blp, cs_api.blp, leads_api.blp, import_api.blp):
        api_of(app).register_blueprint(blueprint)
    app.cli.add_command(cli.members_cli)
