"""Back office: the sales leads the program handed to a dealer (benefit transfers, later referrals),
as a list or CSV, masked and within the members' consent; the dealer moves a lead along."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response

from app.core.http import Blueprint
from app.core.schemas import BaseSchema, OneOf
from app.dealers.models import LEAD_STATUSES
from app.members import leads
from app.operators.auth import current_operator, require_operator

blp = Blueprint("cs_leads", __name__, url_prefix="/api/v1/cs", description="Back office: sales leads")
BEARER = [{"bearerAuth": []}]
ROLES = ("agent", "supervisor", "dealer_manager", "operator")


class LeadQueryArgs(BaseSchema):
    status = ma.fields.String(load_default=None, validate=OneOf(LEAD_STATUSES))


class LeadStatusArgs(BaseSchema):
    status = ma.fields.String(required=True, validate=OneOf(LEAD_STATUSES))


class LeadSchema(ma.Schema):
    id = ma.fields.Integer()
    dealer_code = ma.fields.String(allow_none=True)
    member_no = ma.fields.String(allow_none=True)
    name = ma.fields.String(allow_none=True, metadata={"description": "Masked"})
    phone = ma.fields.String(allow_none=True, metadata={"description": "Masked"})
    model_interest = ma.fields.String(allow_none=True)
    source = ma.fields.String(metadata={"description": "benefit_transfer, referral"})
    referrer_member_no = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    created_at = ma.fields.DateTime()


class LeadListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(LeadSchema))
    hidden = ma.fields.Integer(metadata={"description": "Leads of people who do not share their data with dealers"})


@blp.route("/leads")
@blp.doc(security=BEARER)
@blp.arguments(LeadQueryArgs, location="query")
@blp.response(200, LeadListSchema)
@require_operator(*ROLES)
def list_leads(args: dict[str, Any]) -> dict[str, Any]:
    """My dealer's leads, newest first (HQ: every dealer's); people without ``dealer_sharing``
    consent are only counted (``hidden``). Audited."""
    result = leads.leads_for(current_operator(), status=args.get("status"))
    return {"items": result.items, "hidden": result.hidden}


@blp.route("/leads.csv")
@blp.doc(security=BEARER, responses={200: {"description": "CSV", "content": {"text/csv": {}}}})
@blp.arguments(LeadQueryArgs, location="query")
@require_operator(*ROLES)
def leads_csv(args: dict[str, Any]) -> Response:
    result = leads.leads_for(current_operator(), status=args.get("status"))
    return Response(
        leads.to_csv(result), mimetype="text/csv", headers={"Content-Disposition": 'attachment; filename="leads.csv"'}
    )


@blp.route("/leads/<id:lead_id>", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(LeadStatusArgs)
@blp.response(200, LeadSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator("dealer_manager", "operator")
def set_status(args: dict[str, Any], lead_id: int) -> dict[str, Any]:
    """Contacted, converted or lost: the dealer's sales team reports back."""
    return leads.update_status(current_operator(), lead_id, args["status"])
