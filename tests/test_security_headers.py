"""Security headers on every response; Swagger UI from vendored files, off in production."""

from __future__ import annotations

import pytest
from flask import Flask

from app.config import install, load_settings
from app.core import http, i18n


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/dealers", "/api/openapi.json", "/nope", "/wechat/callback"])
def test_every_response_carries_the_basic_security_headers(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP


@pytest.mark.parametrize("path", ["/api/v1/dealers", "/api/v1/me", "/api/v1/nope"])
def test_api_responses_are_not_stored_by_caches(client, path):
    assert client.get(path).headers["Cache-Control"] == "no-store"


def test_the_openapi_document_may_be_cached(client):
    assert "no-store" not in client.get("/api/openapi.json").headers.get("Cache-Control", "")


def test_hsts_when_the_request_came_over_tls(client):
    response = client.get("/healthz", base_url="https://loyalty.example.com")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_hsts_behind_a_tls_terminating_proxy():
    app = Flask(__name__)
    app.add_url_rule("/x", "x", lambda: "ok")
    app.after_request(http.security_headers)
    http.trust_proxies(app, 1)
    behind_tls = app.test_client().get("/x", headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in app.test_client().get("/x").headers


def test_swagger_ui_is_served_from_vendored_files(client):
    page = client.get("/api/docs").get_data(as_text=True)
    assert "cdn." not in page and "https://" not in page
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "LICENSE"):
        response = client.get(f"/static/vendor/swagger-ui/{name}")
        assert response.status_code == 200, name
        response.close()


def _bare_app(**overrides) -> Flask:
    app = Flask(__name__)
    install(app, load_settings({}, overrides={"ENV": "test", **overrides}))
    app.config.update(
        API_TITLE="t",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/static/vendor/swagger-ui/",
    )
    i18n.init_app(app)
    http.init_app(app)
    return app


def test_api_docs_can_be_switched_off_and_the_document_stays():
    off = _bare_app(API_DOCS=False).test_client()
    assert off.get("/api/docs").status_code == 404
    assert off.get("/api/openapi.json").status_code == 200
    assert _bare_app(API_DOCS=True).test_client().get("/api/docs").status_code == 200
