"""Back office: upload a dealer club's file, follow its import, download its error report."""

from __future__ import annotations

import io
from typing import Any

import marshmallow as ma
from flask import Response, request

from app.core import audit
from app.core.errors import ValidationFailed
from app.core.http import Blueprint
from app.core.i18n import _l, catalog_name, select_locale
from app.core.imports import row_errors
from app.core.models import ImportRun
from app.members import club_import, club_uploads
from app.operators.auth import current_operator, require_operator

blp = Blueprint(
    "club_imports", __name__, url_prefix="/api/v1/cs/imports", description="Back office: dealer-club imports"
)
BEARER = [{"bearerAuth": []}]
ROLES = ("dealer_manager", "operator", "supervisor")


class ImportRunSchema(ma.Schema):
    id = ma.fields.Integer()
    dealer = ma.fields.String(attribute="scope")
    file_name = ma.fields.String()
    status = ma.fields.String(metadata={"description": "queued, running, done or failed"})
    rows_done = ma.fields.Integer(metadata={"description": "Rows read so far (the run resumes after them)"})
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    failure = ma.fields.String(allow_none=True, metadata={"description": "Why the last attempt stopped"})
    created_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)


@blp.route("/dealer-club", methods=["POST"])
@blp.doc(
    security=BEARER,
    requestBody={
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "dealer": {"type": "string", "description": "Dealer code (HQ roles; a dealer manager's own)"},
                    },
                    "required": ["file"],
                }
            }
        }
    },
)
@blp.response(202, ImportRunSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@require_operator(*ROLES)
def upload(**_: Any) -> ImportRun:
    """Upload a club's CSV (Chinese or English headers); it is imported by a background job."""
    sent = request.files.get("file")
    if sent is None or not sent.filename:
        raise ValidationFailed(fields={"file": [_l("Attach the club's CSV file.")]})
    data = sent.stream.read(club_uploads.MAX_UPLOAD_BYTES + 1)
    if len(data) > club_uploads.MAX_UPLOAD_BYTES:
        raise ValidationFailed(fields={"file": [_l("The file is too large.")]})
    # PostgreSQL text holds no NUL: a code or name carrying one is that much shorter, never a 500.
    dealer = (request.form.get("dealer") or "").replace("\x00", "").strip()[:16] or None
    file_name = sent.filename.replace("\x00", "")
    return club_uploads.queue_upload(current_operator(), dealer, file_name, data, catalog_name(select_locale()))


@blp.route("/<int:run_id>")
@blp.doc(security=BEARER)
@blp.response(200, ImportRunSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*ROLES)
def status(run_id: int) -> ImportRun:
    """How far an import got and what it did."""
    return club_uploads.run_for(current_operator(), run_id)


@blp.route("/<int:run_id>/errors.csv")
@blp.doc(security=BEARER, responses={200: {"description": "CSV", "content": {"text/csv": {}}}})
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*ROLES)
def error_report(run_id: int) -> Response:
    """The rows that were not imported and why, in the operator's language."""
    operator = current_operator()
    run = club_uploads.run_for(operator, run_id)
    out = io.StringIO()
    club_import.write_report(row_errors(run.id), catalog_name(select_locale()), out)
    audit.record(actor=("operator", operator.username), action="import.report_read", subject=("import_run", run.id))
    return Response(
        "\ufeff" + out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="import-{run.id}-errors.csv"'},
    )
