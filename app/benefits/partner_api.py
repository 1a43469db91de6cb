"""``POST /api/v1/partners/benefit-usage``: the delivering partner's signed usage callback (a
roadside rescue done, a lounge visit). Verified with the DMS's scheme keyed with
``LOYALTY_BENEFIT_PARTNER_SECRET``, validated, stored raw in the inbox (``source =
'benefit_partner'``, idempotent by ``event_id``) and applied by the drain (``partners.record_use``)."""

from __future__ import annotations

from flask import request

from app.benefits import partners
from app.benefits.schemas import PartnerAcceptedSchema, PartnerUsageSchema
from app.config import current_settings
from app.core.http import Blueprint, load_signed_envelope, signed_webhook_doc
from app.jobs.drain import nudge

blp = Blueprint("benefit_partners", __name__, url_prefix="/api/v1/partners", description="Benefit partners → loyalty")

_envelope = PartnerUsageSchema()


@blp.route("/benefit-usage", methods=["POST"])
@signed_webhook_doc(
    blp,
    summary="Report one use of a partner-delivered benefit",
    description=(
        "The member used the service code of an order we placed (`out_order_no`). Stored before it is "
        "processed; a repeated `event_id` is acknowledged (200, duplicate). 401 on a bad or stale "
        "signature, 422 with field errors."
    ),
    schema=PartnerUsageSchema,
    accepted=PartnerAcceptedSchema,
    keyed_with="the partner secret",
)
def post_usage() -> tuple[dict, int]:
    raw_body = request.get_data(cache=False)
    event = load_signed_envelope(
        raw_body,
        request.headers.get("X-Timestamp"),
        request.headers.get("X-Signature"),
        secret=current_settings().BENEFIT_PARTNER_SECRET,
        schema=_envelope,
    )
    new = partners.accept_usage(event, raw_body)
    if new:
        nudge(partners.SOURCE)
    return {"status": "accepted" if new else "duplicate", "event_id": event["event_id"]}, 202 if new else 200
