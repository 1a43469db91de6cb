"""Tiers (会员等级): thresholds, immediate upgrades, the yearly review's policy, tier history."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """A member's tier (mini-app) and members at risk (back office)."""
    from app.core.http import api_of
    from app.tiers import api

    api_of(app).register_blueprint(api.blp)
