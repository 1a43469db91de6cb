"""DMS intake (SPEC §11): verify, validate, store raw, enqueue. Processing happens in a job.

Order matters: the signature is checked on the raw bytes first (401), then the payload is
validated (422), then the event is stored with a unique (source, event_id) so a resend is
acknowledged without a second effect. Nothing else is written in the request.

The store is the inbox's group commit (``inbox.store_event_at_once``): one autocommitted INSERT
shared by the events arriving at the same moment, committed before the nudge and the 202. The
dealer code is checked against the process's recently seen codes (``dealer_code_exists``).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import current_settings
from app.core import inbox
from app.core.errors import ValidationFailed
from app.core.http import load_signed_envelope
from app.core.i18n import _l
from app.dealers.services import dealer_code_exists
from app.jobs.drain import nudge
from app.sync.schemas import DmsEventSchema

_envelope_schema = DmsEventSchema(intake=True)


@dataclass(frozen=True)
class IntakeResult:
    event_id: str
    duplicate: bool


def accept_event(raw_body: bytes, timestamp: str | None, signature: str | None) -> IntakeResult:
    event = load_signed_envelope(
        raw_body, timestamp, signature, secret=current_settings().DMS_SECRET, schema=_envelope_schema
    )
    if not dealer_code_exists(event["dealer_code"]):
        raise ValidationFailed(fields={"dealer_code": [_l("Unknown dealer code.")]})

    stored_id = inbox.store_event_at_once(
        source="dms",
        external_id=event["event_id"],
        type=event["type"],
        body=raw_body,
        occurred_at=event["occurred_at"],
        dealer_code=event["dealer_code"],
    )
    if stored_id is None:
        return IntakeResult(event["event_id"], duplicate=True)
    nudge("dms")
    return IntakeResult(event["event_id"], duplicate=False)
