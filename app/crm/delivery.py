"""The outbox delivery job: batches of member heads, one transaction each, several workers side by
side (SKIP LOCKED).

A batch commits with ``synchronous_commit = off``: if the server crashed right after, the
"delivered" marks of the last moments could be lost and those rows sent again, under the same
idempotency keys, which the CRM drops. Nothing else is written in these transactions, so the
one-fsync-per-commit wait buys nothing here.
"""

from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa

from app.core.db import db
from app.crm import outbox
from app.jobs import job

DELIVERY_SECONDS = 50  # a run hands over to the next minute's run after this long
#: Member heads claimed per transaction: fewer commits (bench/crm_outbox.py: 20 → 0.25, 100 → 0.62 of
#: the fake CRM's own rate); a batch stops sending after 10 s (``outbox.deliver_batch``).
BATCH = 100


def deliver_until_idle(
    *, now: dt.datetime | None = None, limit: int | None = None, seconds: float = 0, batch: int = BATCH
) -> int:
    """Deliver due rows, a batch per transaction, until none is claimable (nothing due, or every due
    head held by another worker), or ``limit`` rows, or ``seconds``; returns the attempts made."""
    deadline = time.monotonic() + seconds if seconds else None
    attempts = 0
    while limit is None or attempts < limit:
        if deadline is not None and time.monotonic() > deadline:
            break
        size = batch if limit is None else min(batch, limit - attempts)
        try:
            if db.dialect == "postgresql":
                db.session.execute(sa.text("SET LOCAL synchronous_commit = off"))
            sent = outbox.deliver_batch(size, now)
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        if not sent:
            break
        attempts += len(sent)
    return attempts


@job("default", coalesce=5, timeout=DELIVERY_SECONDS * 2)
def deliver_outbox() -> int:
    """Every minute (and on demand): send what is due to the CRM."""
    return deliver_until_idle(seconds=DELIVERY_SECONDS)
