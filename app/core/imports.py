"""Resumable bulk imports of CSV files: runs keyed by file hash, chunked reading, header aliases,
per-row errors and the error report in the operator's language.

A run is ``(kind, scope, file_sha256)``. Each chunk is one transaction that also moves the run's
``rows_done`` forward, under the run row's lock: a process killed between chunks leaves the
database at a chunk boundary, and running the same file again resumes right after it. Two
processes on the same file cannot both apply a chunk: the second finds ``rows_done`` moved and stops.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.errors import Conflict, ValidationFailed
from app.core.i18n import _l, in_locale
from app.core.models import ImportRowError, ImportRun

#: Longest cell we read (a spreadsheet export gone wrong should not fill memory).
csv.field_size_limit(64 * 1024)


@dataclass(frozen=True)
class RowError:
    row_no: int
    code: str
    column: str | None = None


@dataclass
class ChunkResult:
    """What a chunk did: counts by outcome and the rows it refused."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)


class RunBusy(Conflict):
    code = "import_busy"
    default_message = _l("Another process is importing this file right now.")


class RunAlreadyDone(Conflict):
    code = "import_done"
    default_message = _l("This file has already been imported.")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _encoding(path: Path) -> str:
    """UTF-8 (with or without Excel's BOM), else GB18030: what Chinese spreadsheet exports use."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the block's end
            return "gb18030"
    return "utf-8"


def count_rows(path: Path) -> int:
    """Data lines (for the progress bar; a quoted cell with a line break counts twice)."""
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def map_header(header: list[str], aliases: Mapping[str, tuple[str, ...]], required: tuple[str, ...]) -> dict[str, int]:
    """Field → column position, recognising each field by any of its aliases (case and spaces
    ignored). A missing required column is a 422 naming it."""
    normalized = {cell.strip().lower().replace(" ", "").replace("_", ""): i for i, cell in enumerate(header)}
    positions: dict[str, int] = {}
    for name, names in aliases.items():
        for alias in names:
            key = alias.lower().replace(" ", "").replace("_", "")
            if key in normalized:
                positions[name] = normalized[key]
                break
    missing = [name for name in required if name not in positions]
    if missing:
        raise ValidationFailed(
            fields={name: [_l("The file has no column for this field.")] for name in missing},
            details={"header": header, "accepted": {name: list(aliases[name]) for name in missing}},
        )
    return positions


def read_header(path: Path) -> list[str]:
    """The first line's cells; a 422 if the file is not CSV text in UTF-8 or GB18030."""
    try:
        with path.open(encoding=_encoding(path), newline="") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error):
        raise ValidationFailed(fields={"file": [_l("The file is not CSV text (UTF-8 or GB18030).")]}) from None


def _without_nul(cells: list[str]) -> list[str]:
    """PostgreSQL text cannot hold NUL: a NUL spoils its cell like an undecodable byte does."""
    if any("\x00" in cell for cell in cells):
        return [cell.replace("\x00", "\ufffd") for cell in cells]
    return cells


def iter_chunks(path: Path, *, skip: int, size: int) -> Iterator[tuple[int, list[tuple[int, list[str]]], int]]:
    """``(rows_before, [(row_no, cells), …], rows_after)`` per chunk after the first ``skip`` data
    rows. ``row_no`` is the spreadsheet's line number (the header is line 1); blank lines count as
    rows (so a resume stays aligned) but are not returned."""
    # A stray undecodable byte further down spoils one cell (which then fails its check), not the run.
    with path.open(encoding=_encoding(path), errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        index = 0
        chunk: list[tuple[int, list[str]]] = []
        start = skip
        for cells in reader:
            index += 1
            if index <= skip or not any(cell.strip() for cell in cells):
                continue
            chunk.append((index + 1, _without_nul(cells)))
            if len(chunk) >= size:
                yield start, chunk, index
                start, chunk = index, []
        if chunk or start < index:
            yield start, chunk, index


def start_run(
    *, kind: str, scope: str, path: Path, requested_by: str, locale: str, stored_path: str | None = None
) -> ImportRun:
    """The run for this file (created, or the earlier one to resume). Flushes."""
    digest = file_sha256(path)
    # The unique (kind, scope, hash) decides between two processes starting the same file.
    values = {
        "kind": kind,
        "scope": scope,
        "file_sha256": digest,
        "file_name": path.name[:255],
        "requested_by": requested_by[:64],
        "locale": locale,
        "stored_path": stored_path,
        "status": "queued",
        "rows_done": 0,
        "counts": {},
    }
    insert_if_absent(ImportRun, values, ("kind", "scope", "file_sha256"))
    run = db.session.scalar(
        sa.select(ImportRun).where(ImportRun.kind == kind, ImportRun.scope == scope, ImportRun.file_sha256 == digest)
    )
    assert run is not None
    return run


def lock_run_at(run_id: int, expected_rows_done: int) -> ImportRun:
    """Lock the run row for this chunk; ``RunBusy`` if another process moved it meanwhile."""
    run = db.session.scalar(sa.select(ImportRun).where(ImportRun.id == run_id).with_for_update())
    assert run is not None
    db.session.refresh(run)
    if run.rows_done != expected_rows_done or run.status == "done":
        raise RunBusy(details={"run": run_id, "rows_done": run.rows_done})
    return run


def finish_chunk(run: ImportRun, rows_done: int, result: ChunkResult) -> None:
    """Record the chunk's progress, counts and row errors in its transaction."""
    counts = dict(run.counts or {})
    for name, value in result.counts.items():
        counts[name] = counts.get(name, 0) + value
    counts["errors"] = counts.get("errors", 0) + len(result.errors)
    run.counts = counts
    run.rows_done = rows_done
    run.status = "running"
    run.updated_at = utcnow()
    if result.errors:
        db.session.execute(
            sa.insert(ImportRowError),
            [{"run_id": run.id, "row_no": e.row_no, "column": e.column, "code": e.code} for e in result.errors],
        )
    db.session.flush()


def run_chunks(
    run: ImportRun,
    path: Path,
    *,
    chunk_size: int,
    apply_chunk: Callable[[ImportRun, list[tuple[int, list[str]]]], ChunkResult],
    prepare: Callable[[list[tuple[int, list[str]]]], None] | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportRun:
    """Apply the file chunk by chunk from where the run stopped; one commit per chunk (a dry run
    keeps everything in one transaction for the caller to roll back). ``prepare`` sees each chunk
    one step ahead (to start its costly part elsewhere)."""
    if run.status == "done":
        raise RunAlreadyDone(details={"run": run.id, "counts": run.counts})
    run_id, reached = run.id, run.rows_done
    if progress:
        progress(reached)
    chunks = iter_chunks(path, skip=reached, size=chunk_size)
    following = next(chunks, None)
    while following is not None:
        before, rows, after = following
        following = next(chunks, None)
        if prepare is not None and following is not None and following[1]:
            prepare(following[1])  # the next chunk, ahead of time
        current = run if dry_run else lock_run_at(run_id, before)
        result = apply_chunk(current, rows) if rows else ChunkResult()
        finish_chunk(current, after, result)
        if not dry_run:
            db.session.commit()
        reached = after
        if progress:
            progress(reached)
    final = run if dry_run else lock_run_at(run_id, reached)
    final.status = "done"
    final.finished_at = final.updated_at = utcnow()
    db.session.flush()
    if not dry_run:
        db.session.commit()
    return final


def row_errors(run_id: int) -> list[ImportRowError]:
    return list(db.session.scalars(sa.select(ImportRowError).where(ImportRowError.run_id == run_id).order_by("row_no")))


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet shows as text (no formula injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_error_report(
    errors: list[ImportRowError] | list[RowError],
    messages: Mapping[str, Any],
    columns: Mapping[str, str],
    locale: str,
    out: io.TextIOBase | Any,
) -> int:
    """The per-row report: row, column, code and the reason in ``locale``. Returns the row count."""
    with in_locale(locale):
        writer = csv.writer(out)
        writer.writerow([str(_l("Row")), str(_l("Column")), str(_l("Code")), str(_l("Reason"))])
        for error in errors:
            column = columns.get(error.column or "", error.column or "")
            reason = str(messages.get(error.code, error.code))
            writer.writerow([error.row_no, spreadsheet_safe(column), error.code, spreadsheet_safe(reason)])
    return len(errors)


def parse_date(value: str) -> dt.date | None:
    """``2024-03-01``, ``2024/3/1``, ``20240301`` or ``2024年3月1日``; None if it is none of these."""
    text = value.strip().replace("年", "-").replace("月", "-").replace("日", "").replace("/", "-").replace(".", "-")
    text = text.split(" ")[0].split("T")[0]
    try:
        if len(text) == 8 and text.isdigit():
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        year, month, day = (int(part) for part in text.split("-"))
        return dt.date(year, month, day)
    except ValueError:
        return None


YES = frozenset({"y", "yes", "true", "1", "是", "同意", "已同意", "√", "✓"})
NO = frozenset({"n", "no", "false", "0", "否", "不同意", "未同意", ""})


def parse_yes_no(value: str) -> bool | None:
    text = value.strip().lower()
    if text in YES:
        return True
    if text in NO:
        return False
    return None
