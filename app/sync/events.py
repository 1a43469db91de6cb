"""Processing of stored inbound events: one job per event, handlers registered per (source, type).

The job locks the inbox row (SKIP LOCKED), applies the handler and marks the row processed in the
same transaction, so a retried job, a re-enqueue by the sweeper or a second worker never applies
an event twice. A failing handler rolls back whole; the failure is recorded in its own
transaction and RQ retries with backoff, until the attempts run out and the event is dead.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from app.core import inbox, program
from app.core.clock import utcnow
from app.core.db import db
from app.jobs import job

log = logging.getLogger(__name__)

MAX_ATTEMPTS = program.define("inbox.max_attempts", 6, "Processing attempts before an inbound event is dead")
STALL_SECONDS = program.define("inbox.stall_seconds", 120, "Age after which a waiting event is re-enqueued")

Handler = Callable[[inbox.InboundEvent, dict[str, Any]], str]
_HANDLERS: dict[tuple[str, str], Handler] = {}


def handles(source: str, event_type: str) -> Callable[[Handler], Handler]:
    """Register the handler of one event type; it returns a one-line outcome for the inbox row."""

    def register(fn: Handler) -> Handler:
        _HANDLERS[(source, event_type)] = fn
        return fn

    return register


def handler_for(source: str, event_type: str) -> Handler | None:
    return _HANDLERS.get((source, event_type))


@job("events", retry=(10, 60, 300, 900, 3600))
def process_inbound_event(event_id: int) -> str | None:
    """Apply one stored event exactly once."""
    event = inbox.lock_for_processing(event_id)
    if event is None or event.status in (inbox.PROCESSED, inbox.DEAD):
        return None  # another worker has it, or it is done
    handler = handler_for(event.source, event.type)
    if handler is None:
        raise LookupError(f"no handler for {event.source} {event.type}")
    try:
        outcome = handler(event, json.loads(event.body))
    except Exception as exc:
        db.session.rollback()
        _record_failure(event_id, exc)
        raise
    event.status = inbox.PROCESSED
    event.outcome = outcome[:255] if outcome else None
    event.processed_at = utcnow()
    event.attempts += 1
    event.last_error = None
    return outcome


def _record_failure(event_id: int, exc: Exception) -> None:
    """Count the attempt and keep the error. The failed work was rolled back; this small update is
    committed on its own so it survives, then the job re-raises and RQ retries with backoff."""
    log.warning("inbound event %s failed: %r", event_id, exc)
    table = inbox.InboundEvent
    db.session.execute(
        sa.update(table)
        .where(table.id == event_id, table.status != inbox.PROCESSED)
        .values(
            attempts=table.attempts + 1,
            status=sa.case((table.attempts + 1 >= MAX_ATTEMPTS.value(), inbox.DEAD), else_=inbox.FAILED),
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
    )
    db.session.commit()


@job("periodic")
def requeue_stalled_events() -> int:
    """Nudge events whose job was lost (Redis down at intake, worker crash). Idempotent."""
    cutoff = utcnow() - dt.timedelta(seconds=STALL_SECONDS.value())
    ids = inbox.stalled_event_ids(cutoff)
    for event_id in ids:
        process_inbound_event.after_commit(event_id, job_id=f"inbox-{event_id}")
    return len(ids)
