"""The CRM's HTTP API through ``HttpCrm``, against recorded request and response shapes."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from app.core.security import verify_timestamped_signature
from app.gateways import CrmBucket, CrmChange, Refused, Unavailable
from app.gateways.crm_http import HttpCrm

BASE = "https://crm.example.com/api"
SECRET = "crm-test-secret"
CHANGE = CrmChange(
    idempotency_key="loyalty-7-3",
    member_no="9123456789",
    seq=3,
    kind="balance",
    occurred_at="2026-12-02T10:00:00+00:00",
    payload={"member": {"member_no": "9123456789", "tier": "gold", "balance": 1200}},
)


@pytest.fixture
def gateway() -> HttpCrm:
    return HttpCrm(BASE, SECRET, timeout=2)


def test_a_change_is_posted_signed_with_its_idempotency_key(gateway, http_mock):
    http_mock.post(f"{BASE}/v1/member-changes", json={"status": "accepted"}, status=202)
    gateway.deliver(CHANGE)
    request = http_mock.calls[0].request
    verify_timestamped_signature(
        secret=SECRET,
        timestamp=request.headers["X-Timestamp"],
        signature=request.headers["X-Signature"],
        body=request.body,
        window_seconds=5,
    )
    assert request.headers["Idempotency-Key"] == "loyalty-7-3"
    sent = json.loads(request.body)
    assert (sent["member_no"], sent["seq"], sent["kind"]) == ("9123456789", 3, "balance")
    assert sent["payload"]["member"]["tier"] == "gold"


def test_a_repeat_the_crm_already_has_is_success(gateway, http_mock):
    http_mock.post(f"{BASE}/v1/member-changes", json={"error": "duplicate"}, status=409)
    gateway.deliver(CHANGE)


@pytest.mark.parametrize("status", [400, 422])
def test_a_rejected_change_is_refused(gateway, http_mock, status):
    http_mock.post(f"{BASE}/v1/member-changes", json={"error": "invalid phone"}, status=status)
    with pytest.raises(Refused) as caught:
        gateway.deliver(CHANGE)
    assert caught.value.code == status


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_are_unavailable(gateway, http_mock, status):
    http_mock.post(f"{BASE}/v1/member-changes", body="busy", status=status)
    with pytest.raises(Unavailable):
        gateway.deliver(CHANGE)


def test_network_errors_are_unavailable(gateway, http_mock):
    http_mock.post(f"{BASE}/v1/member-changes", body=requests.ConnectionError("refused"))
    with pytest.raises(Unavailable):
        gateway.deliver(CHANGE)


def test_export_buckets_and_members(gateway, http_mock):
    http_mock.get(
        f"{BASE}/v1/export/buckets",
        match=[responses.matchers.query_param_matcher({"prefix_length": "3"})],
        json={"buckets": [{"prefix": "912", "count": 2, "checksum": "abc"}]},
    )
    http_mock.get(
        f"{BASE}/v1/export/members",
        match=[responses.matchers.query_param_matcher({"prefix": "912"})],
        json={"members": [{"member_no": "9123456789", "tier": "gold", "balance": 1200}]},
    )
    assert gateway.export_buckets(3) == [CrmBucket("912", 2, "abc")]
    assert gateway.export_members("912") == {"9123456789": ("gold", 1200)}
    request = http_mock.calls[0].request
    verify_timestamped_signature(
        secret=SECRET,
        timestamp=request.headers["X-Timestamp"],
        signature=request.headers["X-Signature"],
        body=b"/v1/export/buckets?prefix_length=3",
        window_seconds=5,
    )


def test_an_unreadable_export_is_unavailable(gateway, http_mock):
    http_mock.get(f"{BASE}/v1/export/buckets", json={"rows": []})
    with pytest.raises(Unavailable):
        gateway.export_buckets(3)
