"""``POST /api/v1/crm/events``: the CRM's signed webhook (profile updates, call-center consent
changes, merges). Verified with the DMS's scheme (``core.security.verify_timestamped_signature``
keyed with ``LOYALTY_CRM_SECRET``), validated, stored raw in the inbox (``source = 'crm'``,
idempotent by ``event_id``) and processed by the drain (``crm/inbound.py``)."""

from __future__ import annotations

from flask import request

from app.config import current_settings
from app.core import inbox
from app.core.http import Blueprint, load_signed_envelope, signed_webhook_doc
from app.crm.inbound import SOURCE
from app.crm.schemas import CrmAcceptedSchema, CrmEventSchema
from app.jobs.drain import nudge

blp = Blueprint("crm", __name__, url_prefix="/api/v1/crm", description="CRM (central member record) → loyalty")

_envelope = CrmEventSchema()


def accept_event(raw_body: bytes, timestamp: str | None, signature: str | None) -> tuple[str, bool]:
    """Verify (401), validate (422), store; returns (event id, stored now)."""
    event = load_signed_envelope(raw_body, timestamp, signature, secret=current_settings().CRM_SECRET, schema=_envelope)
    stored = inbox.store_event(
        source=SOURCE,
        external_id=event["event_id"],
        type=event["type"],
        body=raw_body,
        occurred_at=event["occurred_at"],
    )
    if stored is not None:
        nudge(SOURCE)
    return event["event_id"], stored is not None


@blp.route("/events", methods=["POST"])
@signed_webhook_doc(
    blp,
    summary="Deliver one CRM event",
    description=(
        "profile.updated, consent.changed or member.merged. Stored before it is processed; a repeated "
        "`event_id` is acknowledged (200, duplicate). 401 on a bad or stale signature, 422 with field errors."
    ),
    schema=CrmEventSchema,
    accepted=CrmAcceptedSchema,
    keyed_with="the CRM secret",
)
def post_event() -> tuple[dict, int]:
    event_id, new = accept_event(
        request.get_data(cache=False), request.headers.get("X-Timestamp"), request.headers.get("X-Signature")
    )
    return {"status": "accepted" if new else "duplicate", "event_id": event_id}, 202 if new else 200
