"""Processing of stored inbound events: handlers registered per (source, type), run by draining.

Intake stores the raw event and *nudges* its source: ``drain_inbox(source)`` is enqueued at most
once every few seconds (a Redis ``SET NX``), so a burst of thousands of callbacks costs one cheap
Redis call each instead of a queued job each. A drain claims the oldest due event with
``FOR UPDATE SKIP LOCKED`` (several workers drain side by side), applies its handler and marks it
processed in one transaction, then takes the next. A failing handler rolls back whole; the failure
is recorded with a backoff (``next_attempt_at``) until the attempts run out and the event is dead.
A periodic sweeper nudges sources whose events wait too long (Redis was down, a worker died).

A source whose handlers keep to the unit of work (``batched(source)``: no commit of their own, side
effects after the commit) is drained in small batches instead: up to ``inbox.drain_batch`` due
events claimed in one statement, applied one after the other and marked processed in one
transaction (one BEGIN and COMMIT, one claim, one status UPDATE, the held-back audit and CRM rows
in one INSERT each, lookups shared by the batch). A batch is all or nothing, like a single event:
a worker killed mid-batch leaves every event of it waiting, unprocessed. If one event fails, the
batch is rolled back and its events are taken again one transaction each, so the failing one is
recorded with its backoff and its batch-mates are processed as before.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask

from app.core import audit, inbox, tunables
from app.core.clock import utcnow
from app.core.db import db
from app.jobs import clear_coalesced, dispatch, job
from app.jobs.schedule import periodic

log = logging.getLogger(__name__)

MAX_ATTEMPTS = tunables.define("inbox.max_attempts", 6, "Processing attempts before an inbound event is dead")
STALL_SECONDS = tunables.define("inbox.stall_seconds", 120, "Age after which a waiting event is nudged again")
BODY_RETENTION_DAYS = tunables.define(
    "inbox.body_retention_days",
    30,
    "Days a processed inbound event keeps its raw body (personal data); then only its SHA-256 is kept",
)
PURGE_BATCH = 500
BACKOFF_SECONDS = (10, 60, 300, 900, 3600)
DRAIN_SECONDS = 60  # a drain hands over to a fresh job after this long
BATCH = tunables.define(
    "inbox.drain_batch",
    20,
    "Due events a drain claims and processes in one transaction, for sources whose handlers allow it "
    "(1: one transaction per event)",
)

#: A handler gets the stored event and its raw body (JSON for the DMS, XML for WeChat).
Handler = Callable[[inbox.InboundEvent, bytes], str]
_HANDLERS: dict[tuple[str, str], Handler] = {}
_BATCHED: set[str] = set()


def handles(source: str, event_type: str) -> Callable[[Handler], Handler]:
    """Register the handler of one event type; it returns a one-line outcome for the inbox row."""

    def register(fn: Handler) -> Handler:
        _HANDLERS[(source, event_type)] = fn
        return fn

    return register


def batched(source: str) -> None:
    """Declare that every handler of ``source`` keeps to the unit of work it is given (flushes,
    never commits; side effects after the commit), so a drain may apply several of its events in
    one transaction."""
    _BATCHED.add(source)


def handler_for(source: str, event_type: str) -> Handler | None:
    return _HANDLERS.get((source, event_type))


def nudge(source: str) -> None:
    """Make sure a drain of ``source`` runs soon: after the commit of the unit of work, or at once
    when it has nothing uncommitted (the event was stored in its own transaction)."""
    if db.in_transaction():
        drain_inbox.after_commit(source)
    else:
        dispatch(drain_inbox.spec, (source,))


def replay_dead(event_ids: list[int], *, actor: tuple[str, str | int]) -> list[int]:
    """Process dead events again (after their cause is fixed): each is audited and its source
    drained after the commit. Returns the ids revived (those that were dead)."""
    revived = inbox.revive(event_ids)
    for event in revived:
        audit.record(actor=actor, action="inbox.replayed", subject=("inbound_event", event.id))
    for source in sorted({event.source for event in revived}):
        nudge(source)
    return [event.id for event in revived]


def _apply(event: inbox.InboundEvent) -> str | None:
    """Run the handler of a locked event and mark it processed (the caller commits)."""
    outcome = _run(event)
    event.status = inbox.PROCESSED
    event.outcome = outcome[:255] if outcome else None
    event.processed_at = utcnow()
    event.attempts += 1
    event.last_error = None
    event.next_attempt_at = None
    return outcome


def _run(event: inbox.InboundEvent) -> str:
    handler = handler_for(event.source, event.type)
    if handler is None:
        raise LookupError(f"no handler for {event.source} {event.type}")
    return handler(event, event.body)


def _record_failure(event_id: int, exc: Exception) -> None:
    """Count the attempt and keep the error. The failed work was rolled back; this small update is
    committed on its own so it survives."""
    log.warning("inbound event %s failed: %r", event_id, exc)
    table = inbox.InboundEvent
    attempts = (db.session.scalar(sa.select(table.attempts).where(table.id == event_id)) or 0) + 1
    backoff = BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]
    db.session.execute(
        sa.update(table)
        .where(table.id == event_id, table.status != inbox.PROCESSED)
        .values(
            attempts=attempts,
            status=inbox.DEAD if attempts >= MAX_ATTEMPTS.value() else inbox.FAILED,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            next_attempt_at=utcnow() + dt.timedelta(seconds=backoff),
        )
    )
    db.session.commit()


@job("events", retry=(10, 60, 300, 900, 3600))
def process_inbound_event(event_id: int) -> str | None:
    """Apply one stored event now, whatever its backoff (support tools, tests)."""
    event = inbox.lock_for_processing(event_id)
    if event is None or event.status in (inbox.PROCESSED, inbox.DEAD):
        return None  # another worker has it, or it is done
    try:
        return _apply(event)
    except Exception as exc:
        db.session.rollback()
        _record_failure(event_id, exc)
        raise


@job("events", coalesce=5, timeout=DRAIN_SECONDS * 2)
def drain_inbox(source: str) -> int:
    """Process due events of ``source`` one transaction each (a batch each for a ``batched``
    source), until none is left (or time is up)."""
    clear_coalesced(drain_inbox, (source,))  # events arriving from now on schedule another drain
    deadline, processed = time.monotonic() + DRAIN_SECONDS, 0
    size = max(1, int(BATCH.value())) if source in _BATCHED else 1
    while time.monotonic() < deadline:
        if size > 1:
            events = inbox.claim_due(source, utcnow(), size)
            if not events:
                return processed
            if len(events) == 1:
                _apply_alone(events[0])  # nothing to share; a failure need not run twice
                processed += 1
            else:
                processed += _apply_batch(events)
            continue
        event = inbox.claim_next(source, utcnow())
        if event is None:
            return processed
        _apply_alone(event)
        processed += 1
    nudge(source)  # more may be waiting: hand over to a fresh job
    return processed


def _apply_alone(event: inbox.InboundEvent) -> None:
    """Apply one locked event in its own transaction; a failure is recorded with its backoff."""
    event_id = event.id
    try:
        _apply(event)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _record_failure(event_id, exc)


def _apply_batch(events: list[inbox.InboundEvent]) -> int:
    """Apply locked events in one transaction, marked processed in one UPDATE; if any fails, roll
    them all back and take them again one transaction each. Returns how many were attempted."""
    ids = [event.id for event in events]
    try:
        finished = []
        for event in events:
            outcome = _run(event)
            finished.append((event, outcome))
        inbox.mark_processed([(event.id, event.attempts + 1, outcome) for event, outcome in finished], utcnow())
        db.session.commit()
        return len(ids)
    except Exception as exc:
        db.session.rollback()
        log.info("a batch of %d %s events failed (%r): taking them one by one", len(ids), events[0].source, exc)
    attempted = 0
    for event_id in ids:
        event = inbox.lock_for_processing(event_id)
        if event is None or event.status not in (inbox.RECEIVED, inbox.FAILED):
            db.session.rollback()  # another worker has it, or has done it since the rollback
            continue
        _apply_alone(event)
        attempted += 1
    return attempted


@job("periodic")
def requeue_stalled_events() -> int:
    """Nudge sources whose events wait too long (their nudge was lost, or a retry is due)."""
    now = utcnow()
    sources = inbox.sources_with_stalled_events(now, now - dt.timedelta(seconds=STALL_SECONDS.value()))
    for source in sources:
        nudge(source)
    return len(sources)


@job("periodic", timeout=1800)
def purge_inbound_bodies() -> int:
    """Daily: erase the raw bodies of events processed more than the retention ago (a SHA-256 of
    each stays), in batches that commit one by one. Events still waiting or dead keep theirs."""
    before = utcnow() - dt.timedelta(days=BODY_RETENTION_DAYS.value())
    purged = 0
    while ids := inbox.processed_with_body(before, PURGE_BATCH):
        purged += inbox.erase_bodies(ids)
        db.session.commit()
    return purged


def init_app(app: Flask) -> None:
    """Every minute, nudge the sources whose events wait (any channel that stores events uses it);
    every night, purge raw bodies past their retention."""
    periodic(requeue_stalled_events, "* * * * *", "re-enqueue inbound events left waiting")
    periodic(purge_inbound_bodies, "15 3 * * *", "erase raw inbound bodies past their retention (hash kept)")
