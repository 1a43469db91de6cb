"""Mini-app: give a transferable benefit to a friend (a share link or mini-app code), see my
shares, and claim one a friend gave me."""

from __future__ import annotations

from typing import Any

from flask import Response, g

from app.api.auth import BEARER, consented_member_required, member_required, per_user_limit, signed_in
from app.benefits import catalog, sharing
from app.benefits.models import BenefitShare
from app.benefits.schemas import ClaimArgs, ShareArgs, ShareSchema
from app.core.db import db
from app.core.http import Blueprint
from app.dealers.models import Dealer

blp = Blueprint("benefit_shares", __name__, url_prefix="/api/v1", description="Mini-app: benefits given to friends")


def share_json(row: BenefitShare, locale: str, viewer_id: int | None) -> dict[str, Any]:
    benefit = row.benefit
    dealer = db.session.get(Dealer, row.dealer_id)
    return {
        "key": row.key,
        "benefit": row.benefit_code,
        "benefit_name": catalog.localized(benefit.name, locale),
        "status": row.status,
        "dealer_code": dealer.code if dealer else None,
        "dealer_name": dealer.name if dealer else None,
        "expires_at": row.expires_at,
        "claimed_at": row.claimed_at,
        "mine": viewer_id == row.from_member_id,
        "booking": row.booking_id if viewer_id == row.claimed_by_member_id else None,
        "scene": sharing.scene_of(row),
        "path": sharing.link_path(row),
        "wxacode_url": f"/api/v1/me/shares/{row.key}/wxacode.png" if viewer_id == row.from_member_id else None,
    }


def _locale() -> str:
    return g.member.locale if g.member is not None else "zh_CN"


@blp.route("/me/shares", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ShareArgs)
@blp.response(201, ShareSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@consented_member_required
@per_user_limit("20/minute")
def give(args: dict[str, Any]) -> dict[str, Any]:
    """Share one use of a transferable benefit: it is held for 7 days for the friend who claims it
    first, then comes back. A resend with the same ``request_id`` returns the same share."""
    result = sharing.share(
        g.member,
        benefit_code=args["benefit"],
        request_id=args["request_id"],
        dealer_code=args.get("dealer"),
        model=args.get("model"),
    )
    return share_json(result.share, g.member.locale, g.member.id)


@blp.route("/me/shares")
@blp.doc(security=BEARER)
@blp.response(200, ShareSchema(many=True))
@member_required
def my_shares() -> list[dict[str, Any]]:
    """Shares I gave and shares I claimed, newest first."""
    return [share_json(row, g.member.locale, g.member.id) for row in sharing.shares_of(g.member.id)]


@blp.route("/me/shares/<key>/wxacode.png")
@blp.doc(security=BEARER, responses={200: {"description": "PNG", "content": {"image/png": {}}}})
@blp.alt_response(404, response="NOT_FOUND")
@member_required
def share_wxacode(key: str) -> Response:
    """The mini-app code of a share I gave (getwxacodeunlimit, asked of WeChat once and kept);
    a friend scanning it opens the claim page. Only the giver: 404 for anyone else."""
    image = sharing.wxacode(g.member, key)
    return Response(image, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})


@blp.route("/shares/<key>")
@blp.doc(security=BEARER)
@blp.response(200, ShareSchema)
@blp.alt_response(404, response="NOT_FOUND")
@signed_in
def show(key: str) -> dict[str, Any]:
    """What a share link offers (for the friend, before claiming: signed in is enough)."""
    viewer = g.member.id if g.member is not None else None
    return share_json(sharing.by_key(key), _locale(), viewer)


@blp.route("/shares/<key>/claim", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ClaimArgs)
@blp.response(200, ShareSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@consented_member_required
@per_user_limit("20/minute")
def claim(args: dict[str, Any], key: str) -> dict[str, Any]:
    """Claim a benefit a friend shared (sign in and accept the policy first: a new person becomes
    a member). Once per share: the first claim wins, 409 ``share_taken`` for the others."""
    row = sharing.claim(g.member, key, model=args.get("model"))
    return share_json(row, g.member.locale, g.member.id)
