"""``flask members …``: look a member up (every read is audited); import a dealer club's file."""

from __future__ import annotations

import csv
import getpass
import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.core.db import db
from app.core.imports_cli import run_file_import
from app.crm import outbox
from app.members import club_import
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


import_cli = AppGroup("import", help="Bulk imports of existing members.")
members_cli.add_command(import_cli)


@import_cli.command("dealer-club")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dealer", "dealer_code", required=True, help="The club's dealer code, e.g. D0101.")
@click.option("--dry-run", is_flag=True, help="Check and count everything, change nothing.")
@click.option(
    "--report", type=click.Path(dir_okay=False, path_type=Path), help="Error report CSV (default FILE.errors.csv)."
)
@click.option("--locale", default="zh_CN", type=click.Choice(["zh_CN", "en"]), help="Language of the report's reasons.")
@click.option(
    "--policy-version", default=None, help="Privacy policy version the club's consent used (default: current)."
)
@click.option("--chunk-rows", default=club_import.CHUNK_ROWS, show_default=True, type=click.IntRange(100, 50_000))
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="FIELD=HEADER",
    help="This file's header for a field, e.g. --column phone=联系电话 (fields: "
    + ", ".join(club_import.COLUMNS)
    + ").",
)
@click.option(
    "--prepare-ahead/--no-prepare-ahead",
    default=True,
    help="Check and encrypt the next chunk in a helper process while the current one is written.",
)
@click.option(
    "--generate-sample", type=click.IntRange(1, 2_000_000), help="First write a sample club file of N rows to FILE."
)
def import_dealer_club(
    file: Path,
    dealer_code: str,
    dry_run: bool,
    report: Path | None,
    locale: str,
    policy_version: str | None,
    chunk_rows: int,
    columns: tuple[str, ...],
    prepare_ahead: bool,
    generate_sample: int | None,
) -> None:
    """Import a dealer club's members (CSV; Chinese or English headers). Running the same file
    again resumes where an interrupted run stopped."""
    if generate_sample:
        with file.open("w", encoding="utf-8", newline="") as out:
            csv.writer(out).writerows(club_import.sample_rows(generate_sample))
        click.echo(f"wrote {generate_sample} sample rows to {file}")
    if not file.exists():
        raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
    mapping = dict(item.split("=", 1) for item in columns if "=" in item)
    if len(mapping) != len(columns):
        raise click.BadParameter("use FIELD=HEADER", param_hint="--column")
    options = club_import.ImportOptions(
        dealer_code=dealer_code,
        actor=("cli", getpass.getuser()),
        locale=locale,
        policy_version=policy_version,
        dry_run=dry_run,
        chunk_rows=chunk_rows,
        prepare_ahead=prepare_ahead,
        columns=mapping,
    )
    run_file_import(
        file,
        lambda progress: club_import.run_import(file, options, progress=progress),
        lambda errors, out: club_import.write_report(errors, locale, out),
        dry_run=dry_run,
        report=report,
        lines_off_a_terminal=True,
    )
