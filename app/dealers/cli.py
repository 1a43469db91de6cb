"""``flask dealers import-master``: load HQ's dealer or staff master file."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.core.db import db
from app.core.errors import AppError
from app.core.imports import count_rows
from app.dealers import master_data

dealers_cli = AppGroup("dealers", help="Dealer and staff master data from HQ.")


@dealers_cli.command("import-master")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["dealers", "staff"]), required=True, help="Which master file this is.")
@click.option("--dry-run", is_flag=True, help="Check and count everything, change nothing.")
@click.option(
    "--report", type=click.Path(dir_okay=False, path_type=Path), help="Error report (default FILE.errors.csv)."
)
@click.option("--locale", default="zh_CN", type=click.Choice(["zh_CN", "en"]), help="Language of the report's reasons.")
def import_master(file: Path, kind: str, dry_run: bool, report: Path | None, locale: str) -> None:
    """Open, move and close dealers; advisors join, move and leave; monthly targets. Running the
    same file again resumes an interrupted run."""
    run_kind = "dealer_master" if kind == "dealers" else "staff_master"
    total = count_rows(file)
    with click.progressbar(length=total, label="importing" if not dry_run else "checking") as bar:
        shown = [0]

        def progress(rows_done: int) -> None:
            bar.update(rows_done - shown[0])
            shown[0] = rows_done

        try:
            outcome = master_data.import_master_file(
                file, run_kind, actor=("cli", getpass.getuser()), locale=locale, dry_run=dry_run, progress=progress
            )
        except AppError as exc:
            db.session.rollback()
            extra = {"fields": getattr(exc, "fields", None), **(exc.details or {})}
            raise click.ClickException(f"{exc.message} {json.dumps(extra, ensure_ascii=False, default=str)}") from None
    if dry_run:
        db.session.rollback()
    report = report or file.with_name(file.name + ".errors.csv")
    with report.open("w", encoding="utf-8-sig", newline="") as out:
        master_data.write_report(run_kind, outcome.errors, locale, out)
    click.echo(("dry run, nothing changed: " if dry_run else f"run {outcome.run_id}: ") + json.dumps(outcome.counts))
    click.echo(f"{len(outcome.errors)} rows refused; report: {report}")
