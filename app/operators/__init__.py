"""Back-office accounts (agents, supervisors, dealer managers, HQ operators) and their access."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Sign-in endpoint and ``flask operators``."""
    from app.core.http import api_of
    from app.operators import api, cli

    api_of(app).register_blueprint(api.blp)
    app.cli.add_command(cli.operators_cli)
