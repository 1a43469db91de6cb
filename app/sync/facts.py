"""What a DMS event means for earning: its business reference, rule attributes, and whose it is.

Shared by the live handlers and the rule simulation, so both see an event the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.members import services
from app.members.models import Member


@dataclass(frozen=True)
class EarningFacts:
    event_type: str
    ref: str
    attributes: dict[str, Any]
    #: ("phone", number) or ("vin_owner", vin): how to find the member who earns.
    member_key: tuple[str, str]


def earning_facts(event_type: str, payload: dict[str, Any]) -> EarningFacts | None:
    """Facts of an earning event; None for events that undo earnings (cancellations, refunds)."""
    if event_type == "vehicle.delivered":
        attributes = {k: payload.get(k) for k in ("price_fen", "model_code", "purchase_type", "model_year")}
        return EarningFacts(event_type, payload["order_no"], attributes, ("phone", payload["buyer"]["phone"]))
    if event_type == "service.completed":
        attributes = {
            "parts_fen": payload["parts_fen"],
            "labour_fen": payload["labour_fen"],
            "total_fen": payload["parts_fen"] + payload["labour_fen"],
            "service_type": payload["service_type"],
            "mileage_km": payload["mileage_km"],
            "model_code": _model_code(payload["vin"]),
        }
        return EarningFacts(event_type, payload["repair_order_no"], attributes, ("vin_owner", payload["vin"]))
    if event_type == "insurance.renewed":
        attributes = {"premium_fen": payload["premium_fen"], "model_code": _model_code(payload["vin"])}
        return EarningFacts(event_type, payload["policy_no"], attributes, ("vin_owner", payload["vin"]))
    if event_type == "test_drive.completed":
        return EarningFacts(
            event_type,
            payload["test_drive_id"],
            {"model_code": payload["model_code"]},
            ("phone", payload["phone"]),
        )
    return None


def _model_code(vin: str) -> str | None:
    vehicle = services.vehicle_by_vin(vin)
    return vehicle.model_code if vehicle else None


def resolve_member(member_key: tuple[str, str]) -> Member | None:
    kind, value = member_key
    if kind == "phone":
        return services.find_by_phone(value)
    vehicle = services.vehicle_by_vin(value)
    owner = services.current_owner(vehicle) if vehicle else None
    return owner.member if owner else None
