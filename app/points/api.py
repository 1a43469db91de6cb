"""Mini-app: my points (balance with ETag, paginated history)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response, g, request

from app.api.auth import BEARER, admit_member, bearer_token, member_required
from app.core.clock import business_today
from app.core.http import Blueprint
from app.core.schemas import page_of
from app.members import sessions
from app.points import queries
from app.points.schemas import HistoryPageSchema, MemberBalanceSchema, MemberHistoryArgs

blp = Blueprint("points", __name__, url_prefix="/api/v1", description="Mini-app: points")


def _balance_etag(version: str) -> str:
    """Changes whenever the account moves or the business day turns (expiring-soon windows)."""
    return hashlib.sha1(f"{version}:{business_today()}".encode()).hexdigest()  # noqa: S324 - a cache tag


@blp.route("/me/points")
@blp.doc(security=BEARER, responses={304: {"description": "Not modified since the ETag you sent"}})
@blp.response(200, MemberBalanceSchema)
def points() -> Any:
    """Available, pending, expiring in 30/90 days. Send ``If-None-Match`` to get 304 when unchanged."""
    found = sessions.resolve_with_balance(bearer_token())  # member_required's checks, in one statement
    admit_member(found.member_status, found.locale)
    etag = _balance_etag(found.version)
    if etag in request.if_none_match:
        response = Response(status=304)
        response.set_etag(etag)
        return response
    response = Response(_balance_json(found.member_no, found.balance), mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _balance_json(member_no: str, balance: queries.Balance) -> str:
    """``MemberBalanceSchema``'s document, written directly (the same keys, order and formats)."""
    expiry = balance.next_expiry_on
    return (
        f'{{"member_no": {json.dumps(member_no)}, "available": {balance.available}, "pending": {balance.pending}, '
        f'"debt": {balance.debt}, "tier_points": {balance.tier_points}, '
        f'"expiring_30_days": {balance.expiring_30_days}, "expiring_90_days": {balance.expiring_90_days}, '
        f'"next_expiry_on": {json.dumps(expiry.isoformat()) if expiry else "null"}, '
        f'"next_expiry_points": {balance.next_expiry_points}, "lifetime_earned": {balance.lifetime_earned}, '
        f'"lifetime_spent": {balance.lifetime_spent}, "lifetime_expired": {balance.lifetime_expired}}}'
    )


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
