"""The real SMS gateway: Aliyun SMS (dysmsapi, ``SendSms``), an RPC-style signed GET.

Request shape (https://help.aliyun.com/document_detail/101414.html and the RPC signature page): the
common parameters (AccessKeyId, Action=SendSms, Format=JSON, RegionId, SignatureMethod=HMAC-SHA1,
SignatureNonce, SignatureVersion=1.0, Timestamp in UTC ISO 8601, Version=2017-05-25) plus
PhoneNumbers, SignName, TemplateCode, TemplateParam (JSON) and OutId; ``Signature`` is the base64
HMAC-SHA1, keyed with ``secret + "&"``, of ``GET&%2F&`` + the percent-encoded sorted query.
Answer: ``{"Code": "OK", "BizId": "...", "RequestId": "...", "Message": "OK"}``; any other Code is an
error (``isv.MOBILE_NUMBER_ILLEGAL``…). Throttling codes mean "try later" (``Unavailable``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from urllib.parse import quote

import requests

from app.gateways import Refused, Unavailable

API_VERSION = "2017-05-25"
#: Codes after which the same message may simply be sent later (rate limits, provider trouble).
TRY_LATER = {"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "isp.SYSTEM_ERROR"}


def percent_encode(value: str) -> str:
    """Aliyun's RFC 3986 encoding: unreserved characters kept, space as %20, ``~`` kept."""
    return quote(value, safe="-_.~")


def signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSms:
    def __init__(
        self, api_base: str, access_key_id: str, access_key_secret: str, sign_name: str, *, timeout: float = 5.0
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.access_key_id, self.access_key_secret = access_key_id, access_key_secret
        self.sign_name, self.timeout = sign_name, timeout

    def signed_query(
        self, phone: str, template_code: str, params: dict[str, str], out_id: str | None, *, nonce: str, at: dt.datetime
    ) -> dict[str, str]:
        query = {
            "AccessKeyId": self.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": phone,
            "RegionId": "cn-hangzhou",
            "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce,
            "SignatureVersion": "1.0",
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(params, ensure_ascii=False, separators=(",", ":")),
            "Timestamp": at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
        }
        if out_id:
            query["OutId"] = out_id
        return {**query, "Signature": signature(query, self.access_key_secret)}

    def send(self, phone: str, template_code: str, params: dict[str, str], *, out_id: str | None = None) -> str:
        query = self.signed_query(
            phone, template_code, params, out_id, nonce=uuid.uuid4().hex, at=dt.datetime.now(dt.UTC)
        )
        try:
            response = requests.get(f"{self.api_base}/", params=query, timeout=self.timeout)
            result = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise Unavailable(type(exc).__name__) from exc
        code = str(result.get("Code") or "")
        if code == "OK":
            return str(result.get("BizId") or "")
        error = Unavailable if code in TRY_LATER or response.status_code >= 500 else Refused
        raise error(str(result.get("Message") or ""), code=code or response.status_code)
