"""Benefits and booking (SPEC §5): the versioned catalog, entitlements per membership year,
dealer slots, bookings exactly once, cancel / reschedule / no-show, check-in at the dealer,
ratings, transfers to friends (with a sales lead for the dealer)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Mini-app and back-office endpoints, ``flask benefits``, the tier-change subscriber, the
    no-show and unclaimed-share jobs."""
    from app.benefits import (  # noqa: F401 - console: member-360 tab; events, merging, partners: subscribers, merge participant
        api,
        booking,
        cli,
        console,
        events,
        hq_api,
        merging,
        partner_api,
        partners,
        sharing,
        sharing_api,
    )
    from app.config import settings_of
    from app.core.http import api_of
    from app.gateways import install_benefit_partner
    from app.gateways.fakes import FakeBenefitPartner
    from app.gateways.partner_http import HttpBenefitPartner
    from app.jobs.schedule import periodic

    settings = settings_of(app)
    if settings.benefit_partner_sandbox:
        install_benefit_partner(app, FakeBenefitPartner())
    else:
        install_benefit_partner(
            app,
            HttpBenefitPartner(
                settings.BENEFIT_PARTNER_URL, settings.BENEFIT_PARTNER_APP_ID, settings.BENEFIT_PARTNER_SECRET
            ),
        )
    api_of(app).register_blueprint(partner_api.blp)
    api_of(app).register_blueprint(api.blp)
    api_of(app).register_blueprint(hq_api.blp)
    api_of(app).register_blueprint(sharing_api.blp)
    app.cli.add_command(cli.benefits_cli)
    console.register_tabs()
    periodic(booking.record_no_shows, "*/15 * * * *", "record no-shows of booked slots that have ended")
    periodic(sharing.return_unclaimed_shares, "7 * * * *", "return benefit shares unclaimed after 7 days")
    periodic(
        partners.resend_partner_orders, "*/5 * * * *", "send partner benefit orders again whose code or void is due"
    )
