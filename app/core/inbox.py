"""The inbound-event inbox: every partner event is stored raw (encrypted) before it is processed.

A unique (source, external_id) makes redelivery harmless: the second insert does nothing and the
caller acknowledges it as a duplicate. Processing happens in a job that locks the row, so a
retried or re-enqueued job never applies an event twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.group_commit import GroupInserter
from app.core.models import DEAD, FAILED, PROCESSED, RECEIVED, InboundEvent
from app.core.security import cipher

__all__ = ["DEAD", "FAILED", "PROCESSED", "RECEIVED", "InboundEvent", "ReplayedNonce"]


class ReplayedNonce(Exception):
    """Another event was already stored under this ``signed_nonce``: the request is a replay."""


def _row(
    *,
    source: str,
    external_id: str,
    type: str,
    body: bytes,
    occurred_at: dt.datetime | None,
    dealer_code: str | None,
    signed_nonce: str | None,
) -> dict[str, object]:
    return {
        "source": source,
        "external_id": external_id,
        "type": type,
        "body": body,
        "occurred_at": occurred_at,
        "received_at": utcnow(),
        "dealer_code": dealer_code,
        "status": RECEIVED,
        "attempts": 0,
        "signed_nonce": signed_nonce,
    }


def store_event(
    *,
    source: str,
    external_id: str,
    type: str,
    body: bytes,
    occurred_at: dt.datetime | None = None,
    dealer_code: str | None = None,
    signed_nonce: str | None = None,
) -> int | None:
    """Insert the raw event; returns its id, or None when (source, external_id) was seen before.

    Raises ``ReplayedNonce`` when ``signed_nonce`` already brought a *different* event (the same
    event under the same nonce is WeChat retrying: a duplicate, None).
    """
    values = _row(
        source=source,
        external_id=external_id,
        type=type,
        body=body,
        occurred_at=occurred_at,
        dealer_code=dealer_code,
        signed_nonce=signed_nonce,
    )
    try:
        return insert_if_absent(InboundEvent, values, conflict_columns=("source", "external_id"))
    except sa.exc.IntegrityError:
        # (source, external_id) conflicts are the arbiter (DO NOTHING); the only other unique
        # key is the nonce.
        raise ReplayedNonce(signed_nonce) from None


def stored_response(source: str, external_id: str) -> bytes | None:
    """The reply kept with an event (a WeChat retry gets the same answer as the first delivery)."""
    return db.session.scalar(
        sa.select(InboundEvent.response).where(InboundEvent.source == source, InboundEvent.external_id == external_id)
    )


def stored_outcome(source: str, external_id: str) -> str | None:
    """The outcome recorded for an event (a WeChat retry of a rate-limited message stays unanswered)."""
    return db.session.scalar(
        sa.select(InboundEvent.outcome).where(InboundEvent.source == source, InboundEvent.external_id == external_id)
    )


def store_event_at_once(
    *,
    source: str,
    external_id: str,
    type: str,
    body: bytes,
    occurred_at: dt.datetime,
    dealer_code: str | None = None,
    signed_nonce: str | None = None,
) -> int | None:
    """``store_event`` as its own transaction, committed when this returns (the caller nudges
    the drain at once, not after a commit).

    The hot path of the WeChat callback (a launch-day QR scan stores its event and nothing else)
    and of DMS intake (a delivery batch from the dealers' systems): an
    autocommitted INSERT outside the session, shared by the requests storing at the same moment
    (``group_commit``). Compared with the session it skips BEGIN, COMMIT and the ORM's
    unit-of-work machinery, and under load most round trips and WAL flushes. Falls back to
    ``store_event`` in the session where the engine is not PostgreSQL or the session is bound to
    an outer transaction (tests), so nothing escapes it.
    """
    bind = db.bind
    if not isinstance(bind, sa.Engine) or bind.dialect.name != "postgresql":
        return store_event(
            source=source,
            external_id=external_id,
            type=type,
            body=body,
            occurred_at=occurred_at,
            dealer_code=dealer_code,
            signed_nonce=signed_nonce,
        )
    # Outside the session nothing applies the column types: encrypt as EncryptedBytes would.
    values = _row(
        source=source,
        external_id=external_id,
        type=type,
        body=cipher().encrypt_bytes(body),
        occurred_at=occurred_at,
        dealer_code=dealer_code,
        signed_nonce=signed_nonce,
    )
    try:
        return _group_inserter(bind).insert(values)
    except psycopg.errors.UniqueViolation:
        raise ReplayedNonce(signed_nonce) from None  # as in store_event


@functools.cache
def _group_inserter(engine: sa.Engine) -> GroupInserter:
    return GroupInserter(engine, InboundEvent.__table__, ("source", "external_id"))  # type: ignore[arg-type]


os.register_at_fork(after_in_child=_group_inserter.cache_clear)  # a child starts with no batch in flight


def _waiting(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        InboundEvent.status.in_((RECEIVED, FAILED)),
        sa.or_(InboundEvent.next_attempt_at.is_(None), InboundEvent.next_attempt_at <= now),
    )


def erase_bodies(event_ids: list[int]) -> int:
    """Drop the raw bodies (and stored replies) of these events, keeping the SHA-256 of each body."""
    erased = 0
    for event in db.session.scalars(
        sa.select(InboundEvent).where(InboundEvent.id.in_(event_ids), InboundEvent.body.is_not(None))
    ):
        event.body_sha256 = hashlib.sha256(event.body).hexdigest()  # type: ignore[arg-type]
        event.body = event.response = None
        erased += 1
    db.session.flush()
    return erased


def processed_with_body(before: dt.datetime, limit: int) -> list[int]:
    """Ids of events processed before ``before`` that still keep their raw body, oldest first."""
    return list(
        db.session.scalars(
            sa.select(InboundEvent.id)
            .where(InboundEvent.status == PROCESSED, InboundEvent.processed_at < before, InboundEvent.body.is_not(None))
            .order_by(InboundEvent.id)
            .limit(limit)
        )
    )


def mark(event_id: int, **values: object) -> None:
    """Update an event's processing state by id (without loading and decrypting its body)."""
    db.session.execute(sa.update(InboundEvent).where(InboundEvent.id == event_id).values(**values))


def lock_for_processing(event_id: int) -> InboundEvent | None:
    """The event row locked for this transaction, or None if another worker holds it."""
    return db.session.get(InboundEvent, event_id, with_for_update={"skip_locked": True})


def claim_next(source: str, now: dt.datetime) -> InboundEvent | None:
    """The oldest event of ``source`` that is due, locked; others draining skip it."""
    return db.session.scalars(
        sa.select(InboundEvent)
        .where(InboundEvent.source == source, _waiting(now))
        .order_by(InboundEvent.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).one_or_none()


def claim_due(source: str, now: dt.datetime, limit: int) -> list[InboundEvent]:
    """Up to ``limit`` of the oldest due events of ``source``, locked; others draining skip them."""
    return list(
        db.session.scalars(
            sa.select(InboundEvent)
            .where(InboundEvent.source == source, _waiting(now))
            .order_by(InboundEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def mark_processed(done: list[tuple[int, int, str | None]], at: dt.datetime) -> None:
    """Mark locked events processed: (id, attempts, outcome) each, in one executemany UPDATE."""
    if not done:
        return
    table = InboundEvent.__table__
    db.session.execute(
        sa.update(table)
        .where(table.c.id == sa.bindparam("event_id"))
        .values(
            status=PROCESSED,
            outcome=sa.bindparam("outcome_text"),
            processed_at=at,
            attempts=sa.bindparam("attempt_count"),
            last_error=None,
            next_attempt_at=None,
        ),
        [
            {"event_id": event_id, "attempt_count": attempts, "outcome_text": outcome[:255] if outcome else None}
            for event_id, attempts, outcome in done
        ],
    )


def sources_with_stalled_events(now: dt.datetime, older_than: dt.datetime) -> list[str]:
    """Sources with due events received before ``older_than``: their nudge was lost (or failed)."""
    return list(
        db.session.scalars(
            sa.select(InboundEvent.source).where(_waiting(now), InboundEvent.received_at < older_than).distinct()
        )
    )


@dataclass(frozen=True)
class SourceBacklog:
    """Events of one source still to process (``waiting``: received or failed, due or backing
    off), the oldest of them, and those given up on (``dead``)."""

    source: str
    waiting: int
    oldest_received_at: dt.datetime | None
    dead: int


def backlog() -> list[SourceBacklog]:
    """Per source: two grouped reads over partial indexes (waiting; dead), cheap at scrape time."""
    waiting = {
        source: (int(count), oldest)
        for source, count, oldest in db.session.execute(
            sa.select(InboundEvent.source, sa.func.count(), sa.func.min(InboundEvent.received_at))
            .where(InboundEvent.status.in_((RECEIVED, FAILED)))
            .group_by(InboundEvent.source)
        )
    }
    dead = dict(
        db.session.execute(
            sa.select(InboundEvent.source, sa.func.count())
            .where(InboundEvent.status == DEAD)
            .group_by(InboundEvent.source)
        ).all()
    )
    return [
        SourceBacklog(source, *waiting.get(source, (0, None)), dead=int(dead.get(source, 0)))
        for source in sorted(waiting.keys() | dead.keys())
    ]


def dead_events(source: str | None = None, limit: int = 50) -> list[InboundEvent]:
    """Events given up on, newest first (the partial index ``ix_inbound_events_dead``)."""
    query = sa.select(InboundEvent).where(InboundEvent.status == DEAD).order_by(InboundEvent.id.desc()).limit(limit)
    if source:
        query = query.where(InboundEvent.source == source)
    return list(db.session.scalars(query))


def revive(event_ids: list[int]) -> list[InboundEvent]:
    """Dead events back to ``received`` with a fresh count of attempts (the last error is kept
    until the next attempt); events that are not dead are left alone."""
    events = list(
        db.session.scalars(
            sa.select(InboundEvent).where(InboundEvent.id.in_(event_ids), InboundEvent.status == DEAD).with_for_update()
        )
    )
    for event in events:
        event.status, event.attempts, event.next_attempt_at = RECEIVED, 0, None
    db.session.flush()
    return events
