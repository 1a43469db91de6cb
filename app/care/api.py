"""Mini-app: the subscribe-message grants a member gave (one accept = one future message) and the
member's notification preferences (opt-out per category)."""

from __future__ import annotations

from typing import Any

from flask import g

from app.api.auth import BEARER, consented_member_required, member_required
from app.care import preferences, subscriptions
from app.care.schemas import GrantSchema, PreferencesArgs, PreferencesSchema, SubscriptionArgs
from app.core.http import Blueprint

blp = Blueprint("care", __name__, url_prefix="/api/v1", description="Mini-app: notifications")


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


def _preferences(member: Any) -> dict[str, Any]:
    return {"opted_out": preferences.opted_out(member.id), "consented": preferences.consented(member)}


@blp.route("/me/notification-preferences")
@blp.doc(security=BEARER)
@blp.response(200, PreferencesSchema)
@member_required
def get_preferences() -> dict[str, Any]:
    """Which categories of messages the member stopped (service reminders, marketing offers)."""
    return _preferences(g.member)


@blp.route("/me/notification-preferences", methods=["PUT"])
@blp.doc(security=BEARER)
@blp.arguments(PreferencesArgs)
@blp.response(200, PreferencesSchema)
@member_required
def put_preferences(args: dict[str, Any]) -> dict[str, Any]:
    """Stop or resume a category; messages already planned are checked again when they are due."""
    preferences.set_opted_out(g.member.id, args["opted_out"], via="miniapp")
    return _preferences(g.member)
