"""Sample DMS events, signed the way the dealer system signs them (demo, CLI, tests, benchmarks)."""

from __future__ import annotations

import json
import secrets
import shlex
from typing import Any

from app.core.clock import business_today, utcnow
from app.members.identifiers import vin_with_check_digit
from app.members.registration import POLICY_VERSION

#: The privacy-policy version a sample buyer accepted at the dealer (the program's default).
SAMPLE_POLICY_VERSION = POLICY_VERSION.default


def sample_delivery(
    *, phone: str = "13800138000", event_id: str | None = None, vin_suffix: str | None = None
) -> dict[str, Any]:
    """A valid ``vehicle.delivered`` event for the demo dealer D0101 and advisor SA0101."""
    suffix = vin_suffix or f"D{secrets.randbelow(10**7):07d}"
    now = utcnow().replace(microsecond=0)
    return {
        "event_id": event_id or f"demo-{secrets.token_hex(6)}",
        "type": "vehicle.delivered",
        "occurred_at": now.isoformat(),
        "dealer_code": "D0101",
        "payload": {
            "order_no": f"SO-{secrets.token_hex(4).upper()}",
            "vin": vin_with_check_digit("LFV2A21K", suffix),
            "model_code": "MAGOTAN",
            "model_name": "迈腾 Magotan 330TSI",
            "model_year": 2026,
            "price_fen": 21_990_000,
            "delivered_on": business_today().isoformat(),
            "advisor_code": "SA0101",
            "buyer": {
                "name": "周杰",
                "phone": phone,
                "gender": "male",
                "customer_type": "private",
                "consent": {
                    "policy_version": SAMPLE_POLICY_VERSION,
                    "accepted_at": now.isoformat(),
                    "purposes": ["service_notifications", "dealer_sharing"],
                },
            },
        },
    }


def sample_delivery_body(**kwargs: Any) -> bytes:
    return json.dumps(sample_delivery(**kwargs), ensure_ascii=False, separators=(",", ":")).encode()


def signed_curl_snippet(base_url: str, secret: str, body: bytes) -> str:
    """A shell snippet that signs at paste time (signatures are only valid for 300 s)."""
    return "\n".join(
        [
            f"BODY={shlex.quote(body.decode())}",
            "TS=$(date +%s)",
            'SIG=$(printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac '
            + shlex.quote(secret)
            + " | sed 's/^.*= //')",
            f"curl -sS -X POST {base_url}/api/v1/dms/events -H 'Content-Type: application/json' \\",
            '  -H "X-Timestamp: $TS" -H "X-Signature: sha256=$SIG" --data-binary "$BODY"; echo',
        ]
    )
