"""Run as ``python -m tests.outage_probe DATABASE_URL REDIS_URL``: builds a fresh app on those URLs
(a closed port stands in for a stopped service), sends one request per kind of endpoint and prints
``{path: [status, Retry-After, error code]}`` as JSON. A subprocess, so the test session's app and
its process-wide engine, cipher and limiter stay untouched."""

from __future__ import annotations

import json
import sys

from flask import Flask

from app import create_app

PROBES = [
    ("get", "/healthz", None),
    ("get", "/readyz", None),
    ("post", "/api/v1/cs/sessions", {"username": "agent", "password": "demo-password"}),  # back office
    ("post", "/api/v1/sessions", {"code": "probe-login"}),  # mini-app sign-in
    ("get", "/api/v1/dealers", None),  # mini-app, public
    ("post", "/api/v1/dms/events", {}),  # DMS webhook (unsigned: refused before any I/O)
    ("get", "/probe/redis", None),  # a Redis call that is not fail-open
]


def build(database_url: str, redis_url: str) -> Flask:
    app = create_app(
        overrides={
            "ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "CRITICAL",
            "DB_CONNECT_TIMEOUT": 2,
        }
    )

    @app.get("/probe/redis")
    def probe_redis() -> dict:
        return {"value": app.extensions["loyalty.redis"].get("probe")}

    return app


def main() -> None:
    database_url, redis_url = sys.argv[1:3]
    client = build(database_url, redis_url).test_client()
    results = {}
    for method, path, body in PROBES:
        response = getattr(client, method)(path, json=body)
        error = (response.get_json(silent=True) or {}).get("error") or {}
        results[path] = [response.status_code, response.headers.get("Retry-After"), error.get("code")]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
