"""Mini-app: dealers by city and region, and the nearest to a point (public)."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.core.http import Blueprint
from app.core.ratelimit import client_ip, limiter
from app.core.schemas import page_of
from app.dealers.models import Dealer
from app.dealers.schemas import DealerPageSchema, DealerQueryArgs, DealerSchema, NearestArgs
from app.dealers.services import active_dealers, nearest_dealers

blp = Blueprint("dealers", __name__, url_prefix="/api/v1", description="Mini-app: dealers")


def dealer_json(dealer: Dealer, distance_km: float | None = None) -> dict[str, Any]:
    return {
        "code": dealer.code,
        "name": dealer.name,
        "region": dealer.region,
        "city": dealer.city,
        "address": dealer.address,
        "phone": dealer.phone,
        "latitude": dealer.latitude,
        "longitude": dealer.longitude,
        "distance_km": round(distance_km, 1) if distance_km is not None else None,
    }


@blp.route("/dealers")
@limiter.limit("120/minute", key_func=client_ip)
@blp.arguments(DealerQueryArgs, location="query")
@blp.response(200, DealerPageSchema)
def dealers(args: dict[str, Any]) -> Response:
    """Active dealers, filtered by city and region (public)."""
    rows, total = active_dealers(
        city=args.get("city"), region=args.get("region"), page=args["page"], per_page=args["per_page"]
    )
    body = page_of([dealer_json(d) for d in rows], page=args["page"], per_page=args["per_page"], total=total)
    response = Response(DealerPageSchema().dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blp.route("/dealers/nearest")
@limiter.limit("60/minute", key_func=client_ip)
@blp.arguments(NearestArgs, location="query")
@blp.response(200, DealerSchema(many=True))
def nearest(args: dict[str, Any]) -> list[dict[str, Any]]:
    """The dealers nearest to a point, with distances."""
    return [dealer_json(d, km) for d, km in nearest_dealers(args["latitude"], args["longitude"], args["limit"])]
