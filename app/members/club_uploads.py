"""Club files uploaded in the back office: kept on disk, imported by a job, watched by status.

A dealer manager uploads their own dealer's file; HQ roles any dealer's. The same file uploaded
again is the same run (file hash): an unfinished one is queued again and resumes, a finished one
is refused. The job runs the same import as the command, chunk by chunk.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from app.config import INSTANCE_DIR
from app.core.db import db
from app.core.errors import Forbidden, NotFound, ValidationFailed
from app.core.i18n import _l
from app.core.imports import RunAlreadyDone, RunBusy, start_run
from app.core.models import ImportRun
from app.dealers.models import Dealer
from app.dealers.services import dealer_by_code
from app.jobs import job
from app.members import club_import
from app.operators.access import may_act_for_dealer
from app.operators.models import Operator

log = logging.getLogger(__name__)

UPLOAD_DIR = INSTANCE_DIR / "imports"
#: An 820,000-row club export is about 80 MB.
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def queue_upload(operator: Operator, dealer_code: str | None, file_name: str, data: bytes, locale: str) -> ImportRun:
    """Store the file and queue its import (after the commit). Flushes."""
    code = dealer_code or _own_dealer_code(operator)
    dealer = club_import.dealer_for_import(code)
    if not may_act_for_dealer(operator, dealer.id):
        raise Forbidden(_l("You can import only your own dealer's club."))
    if not data.strip():
        raise ValidationFailed(fields={"file": [_l("The file is empty.")]})
    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    stored = UPLOAD_DIR / f"{dealer.code}-{hashlib.sha256(data).hexdigest()}.csv"
    stored.write_bytes(data)
    try:
        club_import.check_headers(stored)
    except ValidationFailed:
        stored.unlink(missing_ok=True)
        raise
    run = start_run(
        kind=club_import.KIND,
        scope=dealer.code,
        path=stored,
        requested_by=f"operator:{operator.username}",
        locale=locale,
        stored_path=str(stored),
    )
    run.file_name = Path(file_name).name[:255] or stored.name
    if run.status == "done":
        raise RunAlreadyDone(details={"run": run.id, "counts": run.counts})
    db.session.flush()
    run_uploaded_import.after_commit(run.id)
    return run


def _own_dealer_code(operator: Operator) -> str:
    dealer = db.session.get(Dealer, operator.dealer_id) if operator.dealer_id else None
    if dealer is None:
        raise ValidationFailed(fields={"dealer": [_l("Which dealer's club is this?")]})
    return dealer.code


def run_for(operator: Operator, run_id: int) -> ImportRun:
    """A club import run the operator may see (404 for another dealer's, as for none)."""
    run = db.session.get(ImportRun, run_id) if 0 < run_id < 2**63 else None
    if run is None or run.kind != club_import.KIND:
        raise NotFound(_l("No such import."))
    dealer = dealer_by_code(run.scope)
    if dealer is None or not may_act_for_dealer(operator, dealer.id):
        raise NotFound(_l("No such import."))
    return run


@job("default", timeout=4 * 3600, retry=(30, 120, 600))
def run_uploaded_import(run_id: int) -> dict[str, int] | None:
    """Import an uploaded file (resuming a run a previous attempt left unfinished)."""
    run = db.session.get(ImportRun, run_id)
    if run is None or run.status == "done" or not run.stored_path:
        return None
    actor_type, _, actor_id = run.requested_by.partition(":")
    options = club_import.ImportOptions(dealer_code=run.scope, actor=(actor_type, actor_id), locale=run.locale)
    db.session.commit()
    try:
        outcome = club_import.run_import(Path(run.stored_path), options, stored_path=run.stored_path)
    except RunBusy:
        log.info("import run %s is being worked on by another worker", run_id)
        return None
    except Exception as exc:
        db.session.rollback()  # the failed chunk; the committed ones stay, and a retry resumes after them
        _mark_failed(run_id, exc)
        raise
    Path(run.stored_path).unlink(missing_ok=True)
    return outcome.counts


def _mark_failed(run_id: int, exc: Exception) -> None:
    """Show the failure on the run's status (a retry or the same upload resumes it)."""
    run = db.session.get(ImportRun, run_id)
    if run is not None and run.status != "done":
        run.status, run.failure = "failed", f"{type(exc).__name__}: {exc}"[:255]
        db.session.commit()
