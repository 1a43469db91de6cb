"""Mini-app API, part two: points, tier, member code, subscription grants, dealers."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

import sqlalchemy as sa
from flask import Response, g, request

from app.api.cs_schemas import HistoryPageSchema
from app.api.miniapp_auth import BEARER, consented_member_required, member_required, per_user_limit
from app.api.miniapp_schemas import (
    DealerPageSchema,
    DealerQueryArgs,
    DealerSchema,
    GrantSchema,
    MemberBalanceSchema,
    MemberCodeSchema,
    MemberHistoryArgs,
    MemberTierSchema,
    NearestArgs,
    SubscriptionArgs,
)
from app.care import subscriptions
from app.core.clock import business_today
from app.core.db import db
from app.core.http import Blueprint
from app.core.ratelimit import client_ip, limiter
from app.core.schemas import page_of
from app.dealers.models import Dealer
from app.dealers.services import nearest_dealers
from app.members import member_code
from app.points import queries
from app.tiers.display import tier_highlights, tier_name

blp = Blueprint("miniapp_points", __name__, url_prefix="/api/v1", description="Mini-app: points and services")


_BALANCE_SCHEMA = MemberBalanceSchema()  # built once: schema construction copies every field


def _balance_etag(version: str) -> str:
    """Changes whenever the account moves or the business day turns (expiring-soon windows)."""
    return hashlib.sha1(f"{version}:{business_today()}".encode()).hexdigest()  # noqa: S324 - a cache tag


@blp.route("/me/points")
@blp.doc(security=BEARER, responses={304: {"description": "Not modified since the ETag you sent"}})
@blp.response(200, MemberBalanceSchema)
@member_required
def points() -> Any:
    """Available, pending, expiring in 30/90 days. Send ``If-None-Match`` to get 304 when unchanged."""
    balance, version = queries.balance_and_version(g.member.id)
    etag = _balance_etag(version)
    if etag in request.if_none_match:
        response = Response(status=304)
        response.set_etag(etag)
        return response
    body = {"member_no": g.member.member_no, **dataclasses.asdict(balance)}
    response = Response(_BALANCE_SCHEMA.dumps(body), mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@blp.route("/me/points/history")
@blp.doc(security=BEARER)
@blp.arguments(MemberHistoryArgs, location="query")
@blp.response(200, HistoryPageSchema)
@member_required
def history(args: dict[str, Any]) -> dict[str, Any]:
    items, total = queries.history(
        g.member.id, page=args["page"], per_page=args["per_page"], currency=args.get("currency")
    )
    return page_of(items, page=args["page"], per_page=args["per_page"], total=total)


@blp.route("/me/tier")
@blp.doc(security=BEARER)
@blp.response(200, MemberTierSchema)
@member_required
def tier() -> dict[str, Any]:
    """Tier, progress to the next, review date and what keeps the tier."""
    progress = dataclasses.asdict(queries.tier_progress(g.member.id))
    return {
        **progress,
        "tier_name": tier_name(progress["tier"]),
        "next_tier_name": tier_name(progress["next_tier"]) if progress["next_tier"] else None,
        "highlights": tier_highlights(progress["tier"]),
    }


@blp.route("/me/member-code")
@blp.doc(security=BEARER)
@blp.response(200, MemberCodeSchema)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@member_required
@per_user_limit("30/minute")
def member_code_now() -> dict[str, Any]:
    """A code valid for 60 seconds, to show at the dealer (staff scan it once)."""
    from app.wechat.qrcodes import qr_png

    code, seconds = member_code.issue(g.member.id)
    image = "data:image/png;base64," + base64.b64encode(qr_png(code)).decode()
    return {"code": code, "expires_in": seconds, "image": image}


@blp.route("/me/subscriptions", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SubscriptionArgs)
@blp.response(200, GrantSchema(many=True))
@blp.alt_response(403, response="FORBIDDEN")
@consented_member_required
def record_subscriptions(args: dict[str, Any]) -> list[Any]:
    """Record what the member accepted in wx.requestSubscribeMessage (one accept = one future message)."""
    subscriptions.record(g.member.id, args["request_id"], args["results"])
    return subscriptions.for_member(g.member.id)


@blp.route("/me/subscriptions")
@blp.doc(security=BEARER)
@blp.response(200, GrantSchema(many=True))
@member_required
def list_subscriptions() -> list[Any]:
    return subscriptions.for_member(g.member.id)


def _dealer(dealer: Dealer, distance_km: float | None = None) -> dict[str, Any]:
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
    query = sa.select(Dealer).where(Dealer.active)
    if args.get("city"):
        query = query.where(Dealer.city == args["city"])
    if args.get("region"):
        query = query.where(Dealer.region == args["region"])
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Dealer.code).offset((args["page"] - 1) * args["per_page"]).limit(args["per_page"])
    )
    body = page_of([_dealer(d) for d in rows], page=args["page"], per_page=args["per_page"], total=total or 0)
    response = Response(DealerPageSchema().dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blp.route("/dealers/nearest")
@limiter.limit("60/minute", key_func=client_ip)
@blp.arguments(NearestArgs, location="query")
@blp.response(200, DealerSchema(many=True))
def nearest(args: dict[str, Any]) -> list[dict[str, Any]]:
    """The dealers nearest to a point, with distances."""
    return [_dealer(d, km) for d, km in nearest_dealers(args["latitude"], args["longitude"], args["limit"])]
