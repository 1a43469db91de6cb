"""The outbox delivery job: one transaction per row, several workers side by side (SKIP LOCKED)."""

from __future__ import annotations

import datetime as dt
import time

from app.core.db import db
from app.crm import outbox
from app.jobs import job

DELIVERY_SECONDS = 50  # a run hands over to the next minute's run after this long


def deliver_until_idle(*, now: dt.datetime | None = None, limit: int | None = None, seconds: float = 0) -> int:
    """Deliver due rows, committing each, until none is due (or ``limit`` rows, or ``seconds``)."""
    deadline = time.monotonic() + seconds if seconds else None
    attempts = 0
    while limit is None or attempts < limit:
        if deadline is not None and time.monotonic() > deadline:
            break
        try:
            attempt = outbox.deliver_next(now)
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        if attempt is None:
            break
        attempts += 1
    return attempts


@job("default", coalesce=5, timeout=DELIVERY_SECONDS * 2)
def deliver_outbox() -> int:
    """Every minute (and on demand): send what is due to the CRM."""
    return deliver_until_idle(seconds=DELIVERY_SECONDS)
