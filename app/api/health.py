"""Liveness and readiness probes."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app

from app.core.db import db
from app.core.http import Blueprint
from app.extensions import redis_client

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


@blp.route("/healthz")
@blp.doc(summary="The process is alive", responses={200: {"description": "alive"}})
def healthz() -> dict:
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(
    summary="Database and Redis are reachable",
    responses={200: {"description": "ready"}, 503: {"description": "a dependency is down"}},
)
def readyz() -> tuple[dict, int]:
    checks = {"database": _check(lambda: db.session.execute(sa.text("SELECT 1"))), "redis": _check(_ping)}
    ready = all(value == "ok" for value in checks.values())
    current_app.logger.debug("readiness %s", checks)
    return {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503


def _ping() -> None:
    redis_client().ping()


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"
