"""``flask members …``: look a member up (every read is audited)."""

from __future__ import annotations

import getpass
import json

import click
from flask.cli import AppGroup

from app.core.db import db
from app.crm import outbox
from app.members.cards import member_card, read_member

members_cli = AppGroup("members", help="Look members up (every read is audited).")


@members_cli.command("show")
@click.argument("query")
@click.option("--reason", default=None, help="Why you are looking (kept in the audit log).")
@click.option("--reveal", is_flag=True, help="Show unmasked personal data (needs --reason).")
def members_show(query: str, reason: str | None, reveal: bool) -> None:
    """Show a member by mobile number or member number; personal data is masked."""
    if reveal and not reason:
        raise click.UsageError("--reveal needs --reason")
    member = read_member(query, actor=("cli", getpass.getuser()), reason=reason, reveal=reveal)
    db.session.commit()  # the audit row, even for a miss
    if member is None:
        raise click.ClickException(f"no member matches {query!r}")
    card = {**member_card(member, reveal=reveal), "crm_sync": outbox.sync_state(member.id).as_dict()}
    click.echo(json.dumps(card, ensure_ascii=False, indent=2, default=str))
