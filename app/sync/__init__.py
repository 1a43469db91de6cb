"""The dealer system (DMS) channel: signed events in, stored first, processed exactly once."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """The DMS webhook, its event handlers, ``flask dms`` and the rule simulation's replay source."""
    from app.core import ratelimit
    from app.core.http import api_of, without_session
    from app.points import simulation
    from app.sync import api, cli, handlers, replay  # noqa: F401 - importing handlers registers them

    api_of(app).register_blueprint(api.blp)
    ratelimit.skip_request_check("dms.post_event")  # no @limiter.limit: partners are signed, not counted
    for rule in app.url_map.iter_rules("dms.post_event"):
        without_session(rule.rule)  # a signed webhook: no cookies
    app.cli.add_command(cli.dms_cli)
    simulation.add_replay_source(replay.earning_events)
