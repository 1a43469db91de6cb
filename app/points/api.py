"""Mini-app: my points (balance with ETag, paginated history)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from flask import Response, g, request

from app.api.auth import BEARER, member_required
from app.core.clock import business_today
from app.core.http import Blueprint
from app.core.schemas import page_of
from app.points import queries
from app.points.schemas import HistoryPageSchema, MemberBalanceSchema, MemberHistoryArgs

blp = Blueprint("points", __name__, url_prefix="/api/v1", description="Mini-app: points")


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
