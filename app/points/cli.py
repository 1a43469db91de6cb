"""``flask points …``: rule sets (draft, load, simulate, publish), expiry, settlement, balances."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.core.db import db
from app.core.errors import ValidationFailed
from app.core.schemas import parse_month
from app.members.cards import read_member
from app.points import expiry, queries, rulesets, settlement, simulation
from app.points.rules import rule_to_json

points_cli = AppGroup("points", help="Points: rules, simulation, expiry, settlement.")
rules_cli = AppGroup("rules", help="Earning rule sets: draft → simulate → publish.")
points_cli.add_command(rules_cli)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _echo(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@points_cli.command("balance")
@click.argument("query")
@click.option("--reason", default=None)
def balance(query: str, reason: str | None) -> None:
    """Balance and tier of a member (by phone or member number; the read is audited)."""
    member = read_member(query, actor=("cli", getpass.getuser()), reason=reason)
    db.session.commit()
    if member is None:
        raise click.ClickException(f"no member matches {query!r}")
    _echo(
        {
            "member_no": member.member_no,
            **dataclasses.asdict(queries.balance(member.id)),
            "tier": dataclasses.asdict(queries.tier_progress(member.id)),
        }
    )


@rules_cli.command("list")
def rules_list() -> None:
    for rule_set in rulesets.list_sets():
        window = f"{rule_set.effective_from or '-'} → {rule_set.effective_to or '…'}"
        click.echo(
            f"#{rule_set.id:<4} {rule_set.status:<10} {len(rule_set.rules):>3} rules  {window}  " + rule_set.name
        )


@rules_cli.command("show")
@click.argument("rule_set_id", type=int)
def rules_show(rule_set_id: int) -> None:
    """Print a rule set's rules as JSON (edit it and `load` it into a draft)."""
    _echo([rule_to_json(rule) for rule in rulesets.get(rule_set_id).rules])


@rules_cli.command("draft")
@click.option("--name", required=True)
def rules_draft(name: str) -> None:
    """Copy the rules in force into a new draft."""
    draft = rulesets.draft_from_published(name, actor=_actor())
    db.session.commit()
    click.echo(f"draft #{draft.id} with {len(draft.rules)} rules")


@rules_cli.command("load")
@click.argument("rule_set_id", type=int)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def rules_load(rule_set_id: int, path: Path) -> None:
    """Replace a draft's rules with the JSON list in PATH (validated)."""
    try:
        rulesets.replace_rules(rulesets.get(rule_set_id), json.loads(path.read_text()), actor=_actor())
    except ValidationFailed as err:
        _echo(err.fields)
        raise click.ClickException("the rules are invalid (see above)") from None
    db.session.commit()
    click.echo(f"draft #{rule_set_id} updated")


@rules_cli.command("simulate")
@click.argument("rule_set_id", type=int)
@click.option("--days", default=30, show_default=True, help="Replay the last N days of stored events.")
def rules_simulate(rule_set_id: int, days: int) -> None:
    """Replay recent real events against a draft and report points, cost and members affected."""
    rule_set = rulesets.get(rule_set_id)
    report = simulation.simulate(rule_set, days=days)
    rulesets.record_simulation(rule_set, report, actor=_actor())
    db.session.commit()
    _echo(report)


@rules_cli.command("publish")
@click.argument("rule_set_id", type=int)
@click.option("--effective-from", type=click.DateTime(), default=None, help="UTC; default now")
def rules_publish(rule_set_id: int, effective_from: dt.datetime | None) -> None:
    start = effective_from.replace(tzinfo=dt.UTC) if effective_from else None
    rule_set = rulesets.publish(rulesets.get(rule_set_id), actor=_actor(), effective_from=start)
    db.session.commit()
    click.echo(f"#{rule_set.id} published from {rule_set.effective_from}")


@points_cli.command("expire")
def expire() -> None:
    """Run the nightly expiry now."""
    run = expiry.expire_due(commit_each_chunk=True)
    db.session.commit()
    click.echo(f"expired {run.points} points in {run.lots} lots of {run.members} members ({run.chunks} chunks)")


@points_cli.command("release-pending")
@click.option("--now", "now_text", default=None, help="Pretend it is this ISO date/time (UTC), e.g. 2027-01-05")
def release_pending(now_text: str | None) -> None:
    """Make pending points whose lock or cooling period has ended spendable (the hourly job, now)."""
    now = None
    if now_text:
        try:
            now = dt.datetime.fromisoformat(now_text)
        except ValueError as exc:
            raise click.BadParameter("use an ISO date or date-time", param_hint="--now") from exc
        now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    members = 0
    while touched := expiry.release_due(now):
        db.session.commit()
        members += touched
    db.session.commit()
    click.echo(f"released pending points of {members} member(s)")


@points_cli.command("settle")
@click.argument("month")
def settle(month: str) -> None:
    """Compute dealer statements for MONTH (YYYY-MM) and print them as CSV."""
    first = parse_month(month)
    if first is None:
        raise click.BadParameter("use the form YYYY-MM", param_hint="MONTH")
    settlement.generate(first, actor=_actor())
    db.session.commit()
    click.echo(settlement.to_csv(first), nl=False)
