"""``flask dealers import-master``: load HQ's dealer or staff master file."""

from __future__ import annotations

import getpass
from pathlib import Path

import click
from flask.cli import AppGroup

from app.core.imports_cli import run_file_import
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
    run_file_import(
        file,
        lambda progress: master_data.import_master_file(
            file, run_kind, actor=("cli", getpass.getuser()), locale=locale, dry_run=dry_run, progress=progress
        ),
        lambda errors, out: master_data.write_report(run_kind, errors, locale, out),
        dry_run=dry_run,
        report=report,
    )
