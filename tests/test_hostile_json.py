"""Hostile JSON (huge integers, deep nesting) is a client error on every JSON endpoint, never a 500."""

import json

import pytest

HUGE_INTEGER = b'{"username": "a", "password": ' + b"9" * 5000 + b"}"
DEEP_NESTING = b'{"username": ' + b"[" * 50_000 + b"]" * 50_000 + b', "password": "x"}'
HOSTILE = pytest.mark.parametrize("body", [HUGE_INTEGER, DEEP_NESTING], ids=["huge-integer", "deep-nesting"])


def _assert_client_error(response):
    assert response.status_code in {400, 422}, response.get_data(as_text=True)[:300]
    assert response.json["error"]["code"] in {"bad_request", "validation_failed"}
    assert response.json["request_id"] == response.headers["X-Request-ID"]


@HOSTILE
def test_back_office_json_endpoint(client, body):
    response = client.post("/api/v1/cs/sessions", data=body, headers={"Content-Type": "application/json"})
    _assert_client_error(response)


@HOSTILE
def test_mini_app_json_endpoint(client, body):
    body = body.replace(b'"username"', b'"code"')
    response = client.post("/api/v1/sessions", data=body, headers={"Content-Type": "application/json"})
    _assert_client_error(response)


@HOSTILE
def test_dms_webhook_signed(post_dms, body):
    _assert_client_error(post_dms(body))


def test_a_huge_integer_inside_a_valid_dms_envelope(post_dms):
    body = json.dumps({"event_id": "e1", "type": "vehicle.delivered", "payload": {}}).encode()
    body = body.replace(b"{}", b'{"n": ' + b"7" * 5000 + b"}")
    _assert_client_error(post_dms(body))
