"""``flask dashboard rollup [--from D --to D]``: backfill the dashboard's daily rollups."""

from __future__ import annotations

import datetime as dt

import click
from flask.cli import AppGroup

from app.core.clock import business_today
from app.reporting import rollup

dashboard_cli = AppGroup("dashboard", help="The operator dashboard's daily rollups.")


@dashboard_cli.command("rollup")
@click.option(
    "--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (default: yesterday)."
)
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (default: today).")
@click.option("--days", type=click.IntRange(1, rollup.MAX_BACKFILL_DAYS), default=None, help="Instead of --from.")
def rollup_command(first: dt.datetime | None, last: dt.datetime | None, days: int | None) -> None:
    """Recompute every metric for the business days given (idempotent), a month per commit."""
    end = last.date() if last else business_today()
    if days is not None and first is not None:
        raise click.BadParameter("give --from or --days, not both", param_hint="--days")
    start = first.date() if first else end - dt.timedelta(days=(days or 2) - 1)
    if end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    if (end - start).days >= rollup.MAX_BACKFILL_DAYS:
        raise click.BadParameter(f"at most {rollup.MAX_BACKFILL_DAYS} days at a time", param_hint="--from")
    for run in rollup.backfill(start, end):
        click.echo(f"{run.first} … {run.last}: {run.rows} rows")
