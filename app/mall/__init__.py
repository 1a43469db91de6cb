"""Points mall (SPEC §6): items, stock, limits, flash offers, redemption orders exactly once,
vouchers as QR codes consumed by a dealer's scan, partner code batches, reports, recommendations,
and the activities that earn in the mini-app (daily sign-in, surveys)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Mini-app, staff and back-office endpoints, WeChat Pay notifications, ``flask mall``, the
    withdrawal subscriber, the voucher expiry, payment reconciliation and low-stock jobs."""
    from app.core.http import api_of
    from app.jobs.schedule import periodic
    from app.mall import api, cli, console, events, hq_api, merging, pay_api, reports, settling, vouchers  # noqa: F401 - console: member-360 tab; events, merging: subscribers, merge participant

    api_of(app).register_blueprint(api.blp)
    api_of(app).register_blueprint(hq_api.blp)
    api_of(app).register_blueprint(pay_api.blp)
    app.cli.add_command(cli.mall_cli)
    console.register_tabs()
    periodic(vouchers.expire_vouchers, "30 2 * * *", "expire unused mall vouchers past their validity")
    periodic(settling.reconcile_payments, "* * * * *", "ask WeChat Pay about unpaid mall orders; close them in time")
    periodic(reports.check_low_stock, "0 * * * *", "warn about mall items low on stock")
