"""Points (积分): the ledger, earning rules, expiry, reversals, adjustments, settlement, tier review."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Points endpoints (mini-app, back office, HQ), ``flask points`` and the nightly jobs."""
    from app.core import ratelimit
    from app.core.http import api_of
    from app.jobs.schedule import periodic
    from app.points import api, cli, cs_api, expiry, hq_api, settlement, tier_review

    for blueprint in (api.blp, cs_api.blp, hq_api.blp):
        api_of(app).register_blueprint(blueprint)
    ratelimit.skip_request_check("points.points")  # the balance read: no limit (the home screen's hot path)
    app.cli.add_command(cli.points_cli)
    periodic(expiry.release_due_pending, "5 * * * *", "make pending points spendable after the lock")
    periodic(expiry.expire_due_lots, "30 0 * * *", "expire reward points due (set-based)")
    periodic(tier_review.review_due_tiers, "0 2 * * *", "yearly tier reviews that fall due today")
    periodic(settlement.generate_previous_month, "0 3 1 * *", "draft last month's dealer settlements")
