"""Reporting: the operator dashboard's daily rollups (``daily_metrics``), the job that fills them
and the figures the console draws from them. It reads the other packages' tables (it sits above
every domain package) and no package imports it but the console."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """``flask dashboard rollup`` and the hourly and nightly rollup jobs."""
    from app.jobs.schedule import periodic
    from app.reporting import cli, rollup

    app.cli.add_command(cli.dashboard_cli)
    periodic(rollup.roll_recent, "15 * * * *", "dashboard rollups for yesterday and today")
    periodic(rollup.reroll_window, "45 3 * * *", "dashboard rollups re-rolled for the last weeks (cohorts settle)")
