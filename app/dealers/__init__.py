"""Dealers (经销商) and their staff: sales advisors, service advisors, member managers."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """The public dealer list of the mini-app; ``flask dealers`` (HQ master data)."""
    from app.core.http import api_of
    from app.dealers import api, cli

    api_of(app).register_blueprint(api.blp)
    app.cli.add_command(cli.dealers_cli)
