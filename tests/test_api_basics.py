"""The HTTP edge: probes, error shape, request ids, locale negotiation, OpenAPI."""

import pytest


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_reports_a_broken_redis_with_503(app, client, monkeypatch):
    import redis

    broken = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setitem(app.extensions, "loyalty.redis", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"].startswith("error")
    assert response.json["checks"]["database"] == "ok"


@pytest.mark.parametrize(
    ("accept_language", "message"),
    [(None, "未找到。"), ("en-US,en;q=0.9", "Not found."), ("zh-CN", "未找到。")],
)
def test_unknown_routes_get_the_error_shape_in_the_negotiated_language(client, accept_language, message):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = client.get("/nope", headers=headers)
    assert response.status_code == 404
    assert response.json["error"] == {"code": "not_found", "message": message}
    assert response.json["request_id"] == response.headers["X-Request-ID"]


def test_a_well_formed_request_id_is_kept_and_a_hostile_one_replaced(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert len(replaced) == 32


def test_wrong_method_gets_405_with_allow(client):
    response = client.get("/api/v1/dms/events")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_unexpected_errors_are_500_in_the_error_shape_without_internals(app, client, monkeypatch):
    from app.sync import intake

    def boom(*_a, **_k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(intake, "accept_event", boom)
    response = client.post("/api/v1/dms/events", data=b"{}")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)


def test_openapi_documents_the_dms_webhook_and_error_shape(client):
    spec = client.get("/api/openapi.json").json
    operation = spec["paths"]["/api/v1/dms/events"]["post"]
    assert {p["name"] for p in operation["parameters"]} == {"X-Timestamp", "X-Signature"}
    assert {"202", "200", "401", "422"} <= set(operation["responses"])
    assert "payload" in spec["components"]["schemas"]["DmsEvent"]["properties"]
    assert "error" in spec["components"]["schemas"]["Error"]["properties"]
    assert client.get("/api/docs").status_code == 200
