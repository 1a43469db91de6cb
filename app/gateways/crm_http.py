"""The CRM's HTTP API (the OEM's central member record), signed like our DMS contract.

Every request carries ``X-Timestamp`` and ``X-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>">`` keyed with ``LOYALTY_CRM_SECRET`` (``core.security.sign_timestamped``); a
GET signs its path and query string as the body. Deliveries also carry ``Idempotency-Key``.

* ``POST {base}/v1/member-changes`` ← one change; 2xx accepted, 409 "already have it" is success.
* ``GET {base}/v1/export/buckets?prefix_length=N`` → ``{"buckets": [{"prefix", "count", "checksum"}]}``
* ``GET {base}/v1/export/members?prefix=P`` → ``{"members": [{"member_no", "tier", "balance"}]}``

4xx other than 408/409/429 → ``Refused`` (the CRM will say the same again); 5xx, 408, 429, a
network error or an unreadable answer → ``Unavailable``. Tested with ``responses``
(``tests/test_crm_gateway.py``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import requests

from app.core.security import sign_timestamped
from app.gateways import CrmBucket, CrmChange, Refused, Unavailable

_RETRYABLE = {408, 429}


class HttpCrm:
    def __init__(self, base_url: str, secret: str, *, timeout: float = 5.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.timeout = timeout
        self.session = session or requests.Session()

    def deliver(self, change: CrmChange) -> None:
        body = json.dumps(
            {
                "idempotency_key": change.idempotency_key,
                "member_no": change.member_no,
                "seq": change.seq,
                "kind": change.kind,
                "occurred_at": change.occurred_at,
                "payload": change.payload,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": change.idempotency_key,
            **sign_timestamped(self.secret, body),
        }
        response = self._send("POST", "/v1/member-changes", data=body, headers=headers)
        if response.status_code == 409:  # the CRM already has this key
            return
        self._raise_for(response)

    def export_buckets(self, prefix_length: int) -> list[CrmBucket]:
        document = self._get("/v1/export/buckets", {"prefix_length": prefix_length})
        try:
            return [CrmBucket(str(b["prefix"]), int(b["count"]), str(b["checksum"])) for b in document["buckets"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(f"unreadable export: {type(exc).__name__}") from exc

    def export_members(self, prefix: str) -> dict[str, tuple[str, int]]:
        document = self._get("/v1/export/members", {"prefix": prefix})
        try:
            return {str(m["member_no"]): (str(m["tier"]), int(m["balance"])) for m in document["members"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(f"unreadable export: {type(exc).__name__}") from exc

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        target = f"{path}?{urlencode(params)}"
        response = self._send("GET", target, headers=sign_timestamped(self.secret, target.encode()))
        self._raise_for(response)
        try:
            return response.json()
        except ValueError as exc:
            raise Unavailable("the CRM's answer is not JSON") from exc

    def _send(self, method: str, target: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, self.base_url + target, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise Unavailable(type(exc).__name__) from exc

    @staticmethod
    def _raise_for(response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        message = response.text[:200]
        if status >= 500 or status in _RETRYABLE:
            raise Unavailable(message, code=status)
        raise Refused(message, code=status)
