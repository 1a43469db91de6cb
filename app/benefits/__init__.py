"""Benefits and booking (SPEC §5): the versioned catalog, entitlements per membership year,
dealer slots, bookings exactly once, cancel / reschedule / no-show, check-in at the dealer,
ratings, transfers to friends (with a sales lead for the dealer)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Mini-app and back-office endpoints, ``flask benefits``, the tier-change subscriber, the
    no-show and unclaimed-share jobs."""
    from app.benefits import api, booking, cli, console, events, hq_api, merging, sharing, sharing_api  # noqa: F401 - console: member-360 tab; events, merging: subscribers, merge participant
    from app.core.http import api_of
    from app.jobs.schedule import periodic

    api_of(app).register_blueprint(api.blp)
    api_of(app).register_blueprint(hq_api.blp)
    api_of(app).register_blueprint(sharing_api.blp)
    app.cli.add_command(cli.benefits_cli)
    console.register_tabs()
    periodic(booking.record_no_shows, "*/15 * * * *", "record no-shows of booked slots that have ended")
    periodic(sharing.return_unclaimed_shares, "7 * * * *", "return benefit shares unclaimed after 7 days")
