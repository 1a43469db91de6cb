"""``POST /api/v1/dms/events``: the dealer system's signed event feed (SPEC §11)."""

from __future__ import annotations

from flask import Response, current_app, request

from app.core.http import Blueprint
from app.sync import intake
from app.sync.schemas import DmsAcceptedSchema, DmsEventSchema

blp = Blueprint("dms", __name__, url_prefix="/api/v1/dms", description="Dealer system (DMS) → loyalty")

_SIGNATURE_HEADERS = [
    {
        "name": "X-Timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Unix seconds; must be within 300 s of our clock",
    },
    {
        "name": "X-Signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": 'sha256=<hex HMAC-SHA256 of "<X-Timestamp>.<raw body>"> keyed with the DMS secret',
    },
]


@blp.route("/events", methods=["POST"])
@blp.doc(
    summary="Deliver one DMS event",
    description=(
        "Stored before it is processed; a repeated `event_id` is acknowledged (200, duplicate) and "
        "ignored. 401 on a bad or stale signature, 422 with field errors on a bad payload."
    ),
    parameters=_SIGNATURE_HEADERS,
    requestBody={"required": True, "content": {"application/json": {"schema": DmsEventSchema}}},
)
@blp.response(202, DmsAcceptedSchema, description="Stored; processing is queued")
@blp.alt_response(200, schema=DmsAcceptedSchema, description="Already received; ignored", success=True)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
def post_event() -> Response:
    result = intake.accept_event(
        request.get_data(cache=False),
        request.headers.get("X-Timestamp"),
        request.headers.get("X-Signature"),
    )
    status = "duplicate" if result.duplicate else "accepted"
    # DmsAcceptedSchema's document (two plain strings) written by the app's JSON provider directly,
    # as jsonify would: the same bytes without the schema's dump on every event.
    response = current_app.json.response({"status": status, "event_id": result.event_id})
    response.status_code = 200 if result.duplicate else 202
    return response
