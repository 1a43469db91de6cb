"""``POST /api/v1/sms/reports/<secret>``: Aliyun SMS status reports (``care.sms_reports``)."""

from __future__ import annotations

import json

import marshmallow as ma
from flask import request

from app.care import sms_reports
from app.care.schemas import SmsReportAnswerSchema, SmsReportSchema
from app.core.errors import ValidationFailed
from app.core.http import Blueprint, parse_json
from app.core.i18n import _l

blp = Blueprint("sms", __name__, url_prefix="/api/v1/sms", description="SMS provider (Aliyun) → loyalty")


@blp.route("/reports/<string:secret>", methods=["POST"])
@blp.doc(
    summary="Receive SMS status reports (Aliyun SmsReport, HTTP batch push)",
    description=(
        "A JSON array of status reports. The path's last segment is the secret configured with the address in "
        "the Aliyun console (401 otherwise; the push carries no signature, and the console takes an address only); "
        "while it is rotated the previous secret is taken too. Stored before it is applied; the same push again is "
        "acknowledged without a second effect. 422 with field errors (by position in the array)."
    ),
    requestBody={
        "required": True,
        "content": {"application/json": {"schema": {"type": "array", "items": SmsReportSchema}}},
    },
)
@blp.response(200, SmsReportAnswerSchema, description="Received (Aliyun stops retrying)")
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
def post_reports(secret: str) -> dict:
    sms_reports.check_secret(secret)
    raw_body = request.get_data(cache=False)
    if _load(raw_body):  # an empty array is the console's connectivity test: nothing to keep
        sms_reports.store(raw_body)
    return {"code": 0, "msg": "接收成功"}


_reports = SmsReportSchema(many=True)


def _load(raw_body: bytes) -> list[dict]:
    """The reports (422 with field messages by position when the push is not Aliyun's shape)."""
    try:
        document = parse_json(raw_body)
    except json.JSONDecodeError:
        raise ValidationFailed(fields={"body": [_l("Invalid JSON body.")]}) from None
    if not isinstance(document, list):
        raise ValidationFailed(fields={"body": [_l("The body must be a JSON array of status reports.")]})
    try:
        return _reports.load(document)
    except ma.ValidationError as err:
        raise ValidationFailed(fields=err.normalized_messages()) from None  # type: ignore[arg-type]
