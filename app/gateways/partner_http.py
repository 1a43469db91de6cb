"""The benefit partner's HTTP API (roadside assistance and airport lounges), signed the way such
partners' open platforms usually are: our app id, a timestamp, a nonce and an HMAC-SHA256 of them
and the body.

Every request carries ``X-App-Id``, ``X-Timestamp`` (Unix seconds), ``X-Nonce`` (random, once) and
``X-Sign``: hex HMAC-SHA256, keyed with ``LOYALTY_BENEFIT_PARTNER_SECRET``, of
``"<app id>\\n<timestamp>\\n<nonce>\\n<body>"``. Answers are ``{"code": 0, "msg": …, "data": …}``.

* ``POST {base}/open/v1/service-orders`` ``{"out_order_no", "service_type", "member_no",
  "contact_phone", "vin"}`` → ``data: {"order_no", "service_code", "expire_time"}``. A repeated
  ``out_order_no`` answers the order made the first time (the partner's idempotency key).
* ``POST {base}/open/v1/service-orders/cancel`` ``{"out_order_no"}`` → ``code 0``; ``40401`` (no such
  order: nothing to void) is success too; ``40901``: the code was used, the use stands.

A ``code`` other than 0 is ``Refused`` with that code, except ``50001`` (busy); 5xx, 408, 429, a
network error or an unreadable answer are ``Unavailable``. Tested with ``responses``
(``tests/test_benefit_partners.py``).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import requests

from app.core.clock import parse_partner_moment
from app.core.security import hmac_sha256_hex
from app.gateways import IssuedService, Refused, ServiceOrder, Unavailable

UNKNOWN_ORDER = 40401
BUSY = 50001
_RETRYABLE_STATUS = {408, 429}


def signature(secret: str, app_id: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac_sha256_hex(secret, f"{app_id}\n{timestamp}\n{nonce}\n".encode() + body)


class HttpBenefitPartner:
    def __init__(
        self, base_url: str, app_id: str, secret: str, *, timeout: float = 5.0, session: requests.Session | None = None
    ):
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.secret = secret
        self.timeout = timeout
        self.session = session or requests.Session()

    def issue(self, order: ServiceOrder) -> IssuedService:
        data = self._call(
            "/open/v1/service-orders",
            {
                "out_order_no": order.out_order_no,
                "service_type": order.service,
                "member_no": order.member_no,
                "contact_phone": order.phone,
                "vin": order.vin,
            },
        )
        try:
            expires = data.get("expire_time")
            return IssuedService(
                partner_order_no=str(data["order_no"]),
                service_code=str(data["service_code"]),
                expires_at=parse_partner_moment(expires) if expires else None,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise Unavailable(f"unreadable service order: {type(exc).__name__}") from exc

    def void(self, out_order_no: str) -> None:
        try:
            self._call("/open/v1/service-orders/cancel", {"out_order_no": out_order_no})
        except Refused as refused:
            if refused.code != UNKNOWN_ORDER:
                raise

    def _call(self, path: str, payload: dict[str, Any]) -> Any:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json",
            "X-App-Id": self.app_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Sign": signature(self.secret, self.app_id, timestamp, nonce, body),
        }
        try:
            response = self.session.post(f"{self.base_url}{path}", data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unavailable(f"benefit partner unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUS:
            raise Unavailable(f"benefit partner answered HTTP {response.status_code}")
        try:
            document = response.json()
            code = int(document["code"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"unreadable answer (HTTP {response.status_code})") from exc
        if code == BUSY:
            raise Unavailable(str(document.get("msg") or "busy"), code=code)
        if code != 0:
            raise Refused(str(document.get("msg") or code), code=code)
        return document.get("data") or {}
