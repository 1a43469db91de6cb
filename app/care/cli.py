"""``flask care``: plan reminders and send what is due, by hand (the same jobs run on schedule)."""

from __future__ import annotations

import datetime as dt

import click
from flask.cli import AppGroup

from app.care import dispatch, notify, planning
from app.core.db import db

care_cli = AppGroup("care", help="Care reminders and notifications.")


@care_cli.command("plan")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(planning.PLANNERS)), help="Only these kinds.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Plan as of this day.")
@click.option("--dry-run", is_flag=True, help="Count what would be planned; write nothing.")
def plan(kinds: tuple[str, ...], day: dt.datetime | None, dry_run: bool) -> None:
    """Write the reminders due on a day (default today, Asia/Shanghai)."""
    results = planning.plan(day.date() if day else None, kinds=list(kinds) or None, dry_run=dry_run)
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    verb = "would plan" if dry_run else "planned"
    for result in results:
        click.echo(f"{result.kind:<18} {verb} {result.rows:>8} (channel official_template)")


@care_cli.command("send-due")
@click.option("--limit", type=int, default=None)
def send_due(limit: int | None) -> None:
    """Send every planned notification that is due now; then resolve abandoned sends."""
    handled = notify.send_due(limit)
    swept = dispatch.sweep_stalled()
    db.session.commit()
    click.echo(f"handled {handled}, abandoned sends failed {swept}")
