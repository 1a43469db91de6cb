"""Back office: the benefit catalog (HQ, versioned) and dealer slots (dealer managers for their
own dealer, HQ for any)."""

from __future__ import annotations

from typing import Any

from app.benefits import catalog, slots
from app.benefits.api import slot_json
from app.benefits.models import BenefitCatalog
from app.benefits.schemas import (
    CatalogArgs,
    CatalogBenefitsArgs,
    CatalogSchema,
    CsvResultSchema,
    NewSlotArgs,
    PublishCatalogArgs,
    SlotCsvArgs,
    SlotQueryArgs,
    SlotSchema,
)
from app.core.db import db
from app.core.errors import NotFound, ValidationFailed
from app.core.http import Blueprint
from app.core.i18n import _l
from app.dealers.models import Dealer
from app.dealers.services import dealer_by_code
from app.operators.access import may_act_for_dealer
from app.operators.auth import current_operator, require_operator
from app.operators.models import Operator

blp = Blueprint(
    "hq_benefits", __name__, url_prefix="/api/v1", description="Back office: benefit catalog and dealer slots"
)
BEARER = [{"bearerAuth": []}]
SLOT_ROLES = ("dealer_manager", "operator", "supervisor")


def catalog_json(row: BenefitCatalog) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "based_on_id": row.based_on_id,
        "effective_from": row.effective_from,
        "effective_to": row.effective_to,
        "published_by": row.published_by,
        "benefits": [catalog.benefit_to_json(b) for b in row.benefits],
    }


@blp.route("/program/benefit-catalogs")
@blp.doc(security=BEARER)
@blp.response(200, CatalogSchema(many=True))
@require_operator("operator", "supervisor")
def list_catalogs() -> list[dict[str, Any]]:
    return [catalog_json(c) for c in catalog.list_catalogs()]


@blp.route("/program/benefit-catalogs", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CatalogArgs)
@blp.response(201, CatalogSchema)
@require_operator("operator")
def new_catalog(args: dict[str, Any]) -> dict[str, Any]:
    """Start a draft from the catalog in force."""
    return catalog_json(catalog.draft_from_published(args["name"], actor=current_operator().actor))


@blp.route("/program/benefit-catalogs/<id:catalog_id>")
@blp.doc(security=BEARER)
@blp.response(200, CatalogSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator("operator", "supervisor")
def get_catalog(catalog_id: int) -> dict[str, Any]:
    return catalog_json(catalog.get(catalog_id))


@blp.route("/program/benefit-catalogs/<id:catalog_id>/benefits", methods=["PUT"])
@blp.doc(security=BEARER)
@blp.arguments(CatalogBenefitsArgs)
@blp.response(200, CatalogSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("operator")
def put_benefits(args: dict[str, Any], catalog_id: int) -> dict[str, Any]:
    """Replace the draft's entries (validated; field errors keyed by position)."""
    row = catalog.replace_benefits(catalog.get(catalog_id), args["benefits"], actor=current_operator().actor)
    return catalog_json(row)


@blp.route("/program/benefit-catalogs/<id:catalog_id>/publish", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(PublishCatalogArgs)
@blp.response(200, CatalogSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("operator")
def publish_catalog(args: dict[str, Any], catalog_id: int) -> dict[str, Any]:
    row = catalog.publish(
        catalog.get(catalog_id), actor=current_operator().actor, effective_from=args.get("effective_from")
    )
    return catalog_json(row)


def slot_dealer(operator: Operator, dealer_code: str | None) -> Dealer:
    """A dealer manager acts for their own dealer; HQ names the dealer."""
    if operator.role == "dealer_manager" and dealer_code is None:
        dealer = db.session.get(Dealer, operator.dealer_id)
    else:
        dealer = dealer_by_code(dealer_code or "")
    if dealer is None:
        raise ValidationFailed(fields={"dealer_code": [_l("Unknown dealer code.")]})
    if not may_act_for_dealer(operator, dealer.id):
        raise NotFound()
    return dealer


@blp.route("/cs/slots", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(NewSlotArgs)
@blp.response(201, SlotSchema)
@blp.alt_response(409, response="CONFLICT")
@require_operator(*SLOT_ROLES)
def publish_slot(args: dict[str, Any]) -> dict[str, Any]:
    """Publish a slot (or change the capacity of the same dealer, service and start)."""
    operator = current_operator()
    slot = slots.publish_slot(
        slot_dealer(operator, args.get("dealer_code")),
        service_type=args["service_type"],
        starts_at=args["starts_at"],
        ends_at=args["ends_at"],
        capacity=args["capacity"],
        actor=operator.actor,
    )
    return slot_json(slot)  # type: ignore[return-value]


@blp.route("/cs/slots/csv", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SlotCsvArgs)
@blp.response(200, CsvResultSchema)
@blp.alt_response(409, response="CONFLICT")
@require_operator(*SLOT_ROLES)
def upload_slots(args: dict[str, Any]) -> dict[str, Any]:
    """A month of slots at once (all lines or none)."""
    operator = current_operator()
    result = slots.import_csv(slot_dealer(operator, args.get("dealer_code")), args["csv"], actor=operator.actor)
    return {"created": result.created, "updated": result.updated}


@blp.route("/cs/dealers/<dealer_code>/slots")
@blp.doc(security=BEARER)
@blp.arguments(SlotQueryArgs, location="query")
@blp.response(200, SlotSchema(many=True))
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*SLOT_ROLES, "agent")
def list_slots(args: dict[str, Any], dealer_code: str) -> list[dict[str, Any]]:
    dealer = slot_dealer(current_operator(), dealer_code)
    return [slot_json(s) for s in slots.slots_on(dealer.id, args["day"], args.get("service_type"))]  # type: ignore[misc]
