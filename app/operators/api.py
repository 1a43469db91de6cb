"""Back-office sign-in: username and password for a bearer token."""

from __future__ import annotations

from typing import Any

from app.core.http import Blueprint
from app.operators import auth
from app.operators.schemas import SessionSchema, SignInArgs

blp = Blueprint("operators", __name__, url_prefix="/api/v1/cs", description="Back-office sign-in")


@blp.route("/sessions", methods=["POST"])
@blp.arguments(SignInArgs)
@blp.response(201, SessionSchema)
@blp.alt_response(401, response="UNAUTHORIZED")
def sign_in(args: dict[str, Any]) -> dict[str, Any]:
    """Sign in with username and password; use the token as `Authorization: Bearer <token>`."""
    operator, token = auth.sign_in(args["username"], args["password"])
    return {
        "token": token,
        "expires_in": auth.TOKEN_HOURS.value() * 3600,
        "username": operator.username,
        "name": operator.name,
        "role": operator.role,
    }
