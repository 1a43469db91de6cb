"""What every ``flask … import`` command of a CSV file does around its import (``core/imports``): a
progress bar, a refused import as a click error, a dry run rolled back, the error report written
next to the file, and the summary line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import click

from app.core.db import db
from app.core.errors import AppError
from app.core.imports import RowError, count_rows


class Outcome(Protocol):
    run_id: Any
    counts: dict[str, int]
    errors: list[RowError]


def run_file_import(
    file: Path,
    run: Callable[[Callable[[int], None]], Outcome],
    write_report: Callable[[list[RowError], IO[str]], object],
    *,
    dry_run: bool,
    report: Path | None,
    lines_off_a_terminal: bool = False,
) -> None:
    """``run(progress)`` imports ``file`` (calling ``progress(rows_done)``); ``write_report(errors,
    out)`` writes its refused rows to ``report`` (default ``FILE.errors.csv``). With
    ``lines_off_a_terminal`` the progress is also one line per chunk when the output is a log."""
    total = count_rows(file)
    with click.progressbar(length=total, label="importing" if not dry_run else "checking") as bar:
        shown = [0]

        def progress(rows_done: int) -> None:
            bar.update(rows_done - shown[0])
            shown[0] = rows_done
            if lines_off_a_terminal and not bar._is_atty and rows_done:
                click.echo(f"{rows_done}/{total} rows")  # not a terminal (a log): one line per chunk

        try:
            outcome = run(progress)
        except AppError as exc:
            db.session.rollback()
            extra = {"fields": getattr(exc, "fields", None), **(exc.details or {})}
            raise click.ClickException(f"{exc.message} {json.dumps(extra, ensure_ascii=False, default=str)}") from None
    if dry_run:
        db.session.rollback()
    report = report or file.with_name(file.name + ".errors.csv")
    with report.open("w", encoding="utf-8-sig", newline="") as out:
        write_report(outcome.errors, out)
    click.echo(("dry run, nothing changed: " if dry_run else f"run {outcome.run_id}: ") + json.dumps(outcome.counts))
    click.echo(f"{len(outcome.errors)} rows refused; report: {report}")
