"""What each DMS event does: thin adapters from stored events to the domain services."""

from __future__ import annotations

from typing import Any

from app.core.inbox import InboundEvent
from app.dealers.services import dealer_by_code, staff_at_dealer
from app.members import enrollment
from app.sync.dms_schemas import load_payload
from app.sync.events import handles


def _dealer(event: InboundEvent) -> Any:
    dealer = dealer_by_code(event.dealer_code or "")
    if dealer is None:  # validated at intake; a dealer deleted since is an operator problem
        raise LookupError(f"dealer {event.dealer_code} no longer exists")
    return dealer


@handles("dms", "vehicle.delivered")
def on_vehicle_delivered(event: InboundEvent, document: dict[str, Any]) -> str:
    delivery = load_payload(event.type, document["payload"])
    dealer = _dealer(event)
    advisor = staff_at_dealer(delivery.get("advisor_code"), dealer)
    result = enrollment.enroll_on_purchase(
        delivery,
        dealer=dealer,
        advisor=advisor,
        occurred_at=event.occurred_at,  # type: ignore[arg-type]
        source_event_id=event.id,
    )
    unknown_advisor = delivery.get("advisor_code") and advisor is None
    return result.summary() + (f"; unknown advisor {delivery['advisor_code']}" if unknown_advisor else "")
