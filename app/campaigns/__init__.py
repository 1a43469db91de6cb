"""Campaigns: the service account's enrollment QR codes and red-packet sign-up campaigns."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Enrollment-QR endpoints, ``flask campaigns``, payout reconciliation and QR renewal."""
    from app.campaigns import api, cli, payouts, qrcodes
    from app.core.http import api_of
    from app.jobs.schedule import periodic

    api_of(app).register_blueprint(api.blp)
    app.cli.add_command(cli.campaigns_cli)
    periodic(payouts.reconcile_red_packets, "*/30 * * * *", "ask WeChat Pay about red packets in flight")
    periodic(qrcodes.renew_advisor_codes, "0 4 * * *", "renew advisors' QR codes before they expire")
