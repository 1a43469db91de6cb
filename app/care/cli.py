"""``flask care``: plan reminders and send what is due by hand (the same jobs run on schedule),
pause and resume a kind, resend one notification, and delivery rates."""

from __future__ import annotations

import datetime as dt
import sys

import click
from flask.cli import AppGroup

from app.care import channels, dispatch, notify, operations, planning
from app.core.clock import business_day_start, business_today, utcnow
from app.core.db import db
from app.core.errors import AppError

care_cli = AppGroup("care", help="Care reminders and notifications.")
CLI_ACTOR = ("cli", "flask-care")


@care_cli.command("plan")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(planning.PLANNERS)), help="Only these kinds.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Plan as of this day.")
@click.option("--dry-run", is_flag=True, help="Count what would be planned, per kind and channel; write nothing.")
def plan(kinds: tuple[str, ...], day: dt.datetime | None, dry_run: bool) -> None:
    """Write the reminders due on a day (default today, Asia/Shanghai), kind by kind.

    A dry run plans for real inside a savepoint it rolls back, so it counts exactly the rows that
    would be new and can tell, per row, the channel that would reach the member now (the lifecycle
    pass, which commits page by page, only counts)."""
    chosen = list(kinds) or list(planning.PLANNERS)
    lines = []
    with click.progressbar(chosen, label="planning", file=sys.stderr) as bar:
        for kind in bar:
            started = utcnow()
            count_only = dry_run and kind in planning.COMMITS_AS_IT_GOES
            rehearsal = db.session.begin_nested() if dry_run and not count_only else None
            (result,) = planning.plan(day.date() if day else None, kinds=[kind], dry_run=count_only)
            by_channel = channels.likely_channels(kind, started) if rehearsal is not None else {}
            if rehearsal is not None:
                rehearsal.rollback()  # a savepoint: the rows planned for counting are gone, nothing else
            lines.append((result, by_channel))
    if not dry_run:
        db.session.commit()
    verb = "would plan" if dry_run else "planned"
    for result, by_channel in lines:
        if dry_run:
            split = ", ".join(f"{name} {count}" for name, count in sorted(by_channel.items())) or "-"
            click.echo(f"{result.kind:<18} {verb} {result.rows:>8} ({split})")
        else:
            click.echo(
                f"{result.kind:<18} {verb} {result.rows:>8} (channels {' > '.join(channels.order_for(result.kind))})"
            )


@care_cli.command("send-due")
@click.option("--limit", type=int, default=None)
def send_due(limit: int | None) -> None:
    """Send every planned notification that is due now; then resolve abandoned sends."""
    handled = notify.send_due(limit)
    swept = dispatch.sweep_stalled()
    db.session.commit()
    click.echo(f"handled {handled}, abandoned sends resolved {swept}")


def _set_paused(kind: str, paused: bool, reason: str) -> None:
    kinds = operations.set_paused(kind, paused, actor=CLI_ACTOR, reason=reason)
    db.session.commit()
    click.echo(f"paused: {', '.join(kinds) or 'none'}")


@care_cli.command("pause")
@click.argument("kind")
@click.option("--reason", required=True, help="Kept in the audit log.")
def pause(kind: str, reason: str) -> None:
    """Stop sending KIND: its rows stay planned until it is resumed."""
    _set_paused(kind, True, reason)


@care_cli.command("resume")
@click.argument("kind")
@click.option("--reason", required=True, help="Kept in the audit log.")
def resume(kind: str, reason: str) -> None:
    """Send KIND again (what was held goes out with the next dispatch)."""
    _set_paused(kind, False, reason)


@care_cli.command("resend")
@click.argument("notification_id", type=int)
@click.option("--reason", required=True, help="Kept in the audit log.")
def resend(notification_id: int, reason: str) -> None:
    """Send a finished notification again (as a new one, due now). Audited."""
    try:
        row = operations.resend(notification_id, actor=CLI_ACTOR, reason=reason)
    except AppError as exc:
        raise click.ClickException(str(exc.message)) from exc
    db.session.commit()
    click.echo(f"resend planned as notification {row.id}")


@care_cli.command("stats")
@click.option("--days", type=click.IntRange(1, 366), default=7, help="Planned in the last N days (Asia/Shanghai).")
def stats(days: int) -> None:
    """Delivery rates per kind and channel."""
    since = business_day_start(business_today() - dt.timedelta(days=days - 1))
    click.echo(
        f"{'kind':<18} {'channel':<18} {'total':>7} {'reached':>7} {'failed':>7} {'skipped':>7} {'open':>5}  rate"
    )
    for rate in operations.delivery_rates(since):
        shown = "-" if rate.delivery_rate is None else f"{rate.delivery_rate:.1%}"
        click.echo(
            f"{rate.kind:<18} {rate.channel:<18} {rate.total:>7} {rate.reached:>7} {rate.failed:>7} "
            f"{rate.skipped:>7} {rate.open:>5}  {shown}"
        )
