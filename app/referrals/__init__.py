"""Referrals (推荐购车): codes and mini-app codes, first-touch attribution, milestone rewards with
cooling and clawback, fraud flags and the supervisor's review queue, the funnel."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Mini-app and back-office endpoints, ``flask referrals``, and the simulation's replay source."""
    from app.core.http import api_of
    from app.points.simulation import add_replay_source
    from app.referrals import api, cli, console, events, hq_api, merging, replay  # noqa: F401 - console: member-360 tab; events, merging: subscribers, merge participant

    api_of(app).register_blueprint(api.blp)
    api_of(app).register_blueprint(hq_api.blp)
    console.register_tabs()
    app.cli.add_command(cli.referrals_cli)
    add_replay_source(replay.referral_events)
