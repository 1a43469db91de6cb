"""Stored DMS events replayed for a rule simulation (``points.simulation``), seen exactly as the
live handlers see them (``sync.facts``)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import sqlalchemy as sa

from app.core import inbox
from app.core.db import db
from app.dealers.services import dealer_by_code
from app.points.simulation import ReplayedEvent
from app.sync.facts import earning_facts, resolve_member
from app.sync.schemas import load_payload


def earning_events(since: dt.datetime, until: dt.datetime) -> Iterator[ReplayedEvent]:
    """Processed DMS earning events that occurred in [since, until), oldest first. Events whose raw
    body was erased (past ``inbox.body_retention_days``, or the person withdrew) are not replayed."""
    stored = db.session.scalars(
        sa.select(inbox.InboundEvent)
        .where(
            inbox.InboundEvent.source == "dms",
            inbox.InboundEvent.status == inbox.PROCESSED,
            inbox.InboundEvent.body.is_not(None),
            inbox.InboundEvent.occurred_at >= since,
            inbox.InboundEvent.occurred_at < until,
        )
        .order_by(inbox.InboundEvent.occurred_at, inbox.InboundEvent.id)
        .execution_options(yield_per=500)
    )
    for event in stored:
        facts = earning_facts(event.type, load_payload(event.type, json.loads(event.body)["payload"]))
        if facts is None:
            continue
        yield ReplayedEvent(
            member=resolve_member(facts.member_key),
            event_type=event.type,
            attributes=facts.attributes,
            occurred_at=event.occurred_at,  # type: ignore[arg-type]
            dealer=dealer_by_code(event.dealer_code or ""),
        )
