"""Partner voucher codes, uploaded in batches: the upload is stored (encrypted) and counted, a job
processes it in chunks, committing each, so ``processed / total_rows`` is a progress bar the back
office polls; a refused row (blank, malformed, duplicate, bad date) is listed with its line."""

from __future__ import annotations

import csv
import datetime as dt
import io

import sqlalchemy as sa

from app.core import audit
from app.core.clock import business_day_start, parse_day, utcnow
from app.core.db import db, insert_if_absent
from app.core.errors import ValidationFailed
from app.core.i18n import _l
from app.core.schemas import IDENTIFIER_RE
from app.core.security import sha256_hex
from app.jobs import job
from app.mall.models import CodeBatch, MallItem, PartnerCode

CHUNK = 500
MAX_ROWS = 50_000


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def upload(item: MallItem, text: str, *, actor: str, in_background: bool = True) -> CodeBatch:
    """Store a batch for processing (by a job after the commit, or by the caller chunk by chunk);
    the header must be ``code[,expires_on]``."""
    if item.kind != "partner_voucher":
        raise ValidationFailed(fields={"item": [_l("Codes are uploaded for partner vouchers only.")]})
    rows = _rows(text)
    if not rows or [c.strip().lower() for c in rows[0]][:1] != ["code"]:
        raise ValidationFailed(fields={"csv": [_l("The first line must be the header code,expires_on.")]})
    if len(rows) - 1 > MAX_ROWS:
        raise ValidationFailed(fields={"csv": [_l("At most %(count)s codes per upload.", count=MAX_ROWS)]})
    batch = CodeBatch(item_id=item.id, total_rows=len(rows) - 1, payload=text, created_by=actor, errors=[])
    db.session.add(batch)
    db.session.flush()
    audit.record(
        actor=("operator", actor),
        action="mall.codes_uploaded",
        subject=("mall_item", item.id),
        details={"batch": batch.id, "rows": batch.total_rows},
    )
    if in_background:
        process_batch.after_commit(batch.id)
    return batch


def _check_row(row: list[str]) -> tuple[str, dt.datetime | None] | str:
    code = (row[0] if row else "").strip()
    if not code:
        return "empty code"
    if len(code) > 64 or not IDENTIFIER_RE.fullmatch(code):
        return "malformed code"
    expires = None
    if len(row) > 1 and row[1].strip():
        try:
            expires = business_day_start(parse_day(row[1].strip()) + dt.timedelta(days=1))
        except ValueError:
            return "bad expires_on (YYYY-MM-DD)"
    return code, expires


def process_chunk(batch_id: int) -> bool:
    """Process the next chunk of a batch (under its row lock); True when the batch is done."""
    batch = db.session.scalar(
        sa.select(CodeBatch)
        .where(CodeBatch.id == batch_id)
        .with_for_update()
        .execution_options(populate_existing=True)  # another worker may have moved it meanwhile
    )
    if batch is None or batch.status == "done":
        return True
    rows = _rows(batch.payload or "")[1:]
    start = batch.processed
    errors = list(batch.errors)
    accepted = 0
    for offset, row in enumerate(rows[start : start + CHUNK]):
        line = start + offset + 2  # 1-based, after the header
        checked = _check_row(row)
        if isinstance(checked, str):
            errors.append({"line": line, "error": checked})
            continue
        code, expires = checked
        new = insert_if_absent(
            PartnerCode,
            {
                "item_id": batch.item_id,
                "batch_id": batch.id,
                "code": code,
                "code_hash": sha256_hex(code),
                "expires_at": expires,
                "created_at": utcnow(),
            },
            ("item_id", "code_hash"),
        )
        if new is None:
            errors.append({"line": line, "error": "duplicate code"})
        else:
            accepted += 1
    batch.processed = min(batch.total_rows, start + CHUNK)
    batch.accepted += accepted
    batch.errors = errors
    batch.status = "running"
    if batch.processed >= batch.total_rows:
        batch.status, batch.finished_at, batch.payload = "done", utcnow(), None  # the codes live in their rows now
        _add_stock(batch)
    db.session.flush()
    return batch.status == "done"


def _add_stock(batch: CodeBatch) -> None:
    """Each accepted code is one unit of stock."""
    db.session.execute(
        sa.update(MallItem).where(MallItem.id == batch.item_id).values(stock=MallItem.stock + batch.accepted)
    )


@job("default", timeout=600)
def process_batch(batch_id: int) -> None:
    """Process a batch chunk by chunk, committing each (the progress bar moves)."""
    while not process_chunk(batch_id):
        db.session.commit()


def progress_percent(batch: CodeBatch) -> int:
    return 100 if batch.total_rows == 0 else batch.processed * 100 // batch.total_rows


def get(batch_id: int) -> CodeBatch | None:
    return db.session.get(CodeBatch, batch_id)
