"""A local fake of the WeChat and WeChat Pay APIs, served by the app (never in production).

With ``LOYALTY_WECHAT_API_BASE=sandbox`` / ``LOYALTY_WECHAT_PAY_API_BASE=sandbox`` (the defaults of
``make run``) the real clients talk HTTP to ``/sandbox/wechat/…`` and ``/sandbox/wechat-pay/…``.
Every call is recorded (newest first at ``GET /sandbox/calls``, ``flask wechat sandbox-calls``)
so a developer can see what the service would have sent to WeChat.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import xmltodict
from defusedxml.ElementTree import fromstring
from flask import Blueprint, Response, current_app, jsonify, request

from app.config import settings_of
from app.extensions import redis_client

blp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

CALLS_KEY = "sandbox:calls"
PAID_KEY = "sandbox:paid-bills"
KEEP_CALLS = 500


def _record(api: str, payload: Any) -> None:
    entry = json.dumps({"at": int(time.time()), "api": api, "payload": payload}, ensure_ascii=False, default=str)
    pipe = redis_client().pipeline()
    pipe.lpush(CALLS_KEY, entry)
    pipe.ltrim(CALLS_KEY, 0, KEEP_CALLS - 1)
    pipe.execute()


def recorded_calls(limit: int = 50) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis_client().lrange(CALLS_KEY, 0, limit - 1)]


def _json_body() -> dict[str, Any]:
    """wechatpy posts JSON without a JSON content type; read the raw body."""
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@blp.get("/calls")
def calls() -> Response:
    return jsonify(recorded_calls(int(request.args.get("limit", 50))))


@blp.route("/wechat/cgi-bin/stable_token", methods=["POST"])
@blp.route("/wechat/cgi-bin/token", methods=["GET"])
def token() -> Response:
    appid = _json_body().get("appid") or request.args.get("appid")
    _record("token", {"appid": appid})
    return jsonify({"access_token": f"sandbox-token-{secrets.token_hex(8)}", "expires_in": 7200})


@blp.post("/wechat/cgi-bin/qrcode/create")
def qrcode_create() -> Response:
    body = _json_body()
    scene = body.get("action_info", {}).get("scene", {}).get("scene_str", "")
    _record("qrcode.create", body)
    ticket = hashlib.sha256(f"{scene}:{time.time_ns()}".encode()).hexdigest()[:32]
    result = {"ticket": ticket, "url": f"http://weixin.qq.com/q/sandbox-{ticket[:16]}"}
    if "expire_seconds" in body:
        result["expire_seconds"] = body["expire_seconds"]
    return jsonify(result)


@blp.post("/wechat/cgi-bin/message/template/send")
def template_send() -> Response:
    _record("message.template.send", _json_body())
    return jsonify({"errcode": 0, "errmsg": "ok", "msgid": int(time.time_ns() % 10**12)})


@blp.post("/wechat/cgi-bin/message/custom/send")
@blp.post("/wechat/cgi-bin/menu/create")
def ok() -> Response:
    _record(request.path.rsplit("/cgi-bin/", 1)[-1].replace("/", "."), _json_body())
    return jsonify({"errcode": 0, "errmsg": "ok"})


def sandbox_unionid(person: str) -> str:
    """One person's unionid in the sandbox: a wx.login code equal to a service-account openid is
    the same person (so ``flask wechat simulate … --openid X`` and a mini-app login with code X meet)."""
    return f"sandbox-union-{hashlib.sha256(person.encode()).hexdigest()[:20]}"


@blp.get("/wechat/cgi-bin/user/info")
def user_info() -> Response:
    openid = request.args.get("openid", "")
    _record("user.info", {"openid": openid})
    return jsonify({"subscribe": 1, "openid": openid, "language": "zh_CN", "unionid": sandbox_unionid(openid)})


@blp.get("/wechat/sns/jscode2session")
def jscode2session() -> Response:
    code = request.args.get("js_code", "")
    _record("jscode2session", {"js_code": code})
    if not code or code.startswith("bad"):
        return jsonify({"errcode": 40029, "errmsg": "invalid code"})
    digest = hashlib.sha256(code.encode()).hexdigest()
    return jsonify(
        {
            "openid": f"sandbox-mini-{digest[:20]}",
            "session_key": secrets.token_urlsafe(16),
            "unionid": sandbox_unionid(code),
        }
    )


@blp.post("/wechat/wxa/business/getuserphonenumber")
def phone_number() -> Response:
    code = _json_body().get("code", "")
    _record("getuserphonenumber", {"code": code})
    digits = code.rsplit("-", 1)[-1]
    phone = digits if digits.isdigit() and len(digits) == 11 else "13800138000"
    return jsonify(
        {
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {"phoneNumber": phone, "purePhoneNumber": phone, "countryCode": "86"},
        }
    )


def _pay_xml(fields: dict[str, Any]) -> Response:
    return Response(xmltodict.unparse({"xml": fields}), mimetype="application/xml")


def _pay_request() -> dict[str, Any]:
    root = fromstring(request.get_data(), forbid_dtd=True, forbid_entities=True)
    return {child.tag: child.text for child in root}


@blp.post("/wechat-pay/mmpaymkttransfers/sendredpack")
def send_red_packet() -> Response:
    """Pays a bill number once; sending the same bill number again pays nothing more."""
    fields = _pay_request()
    bill = fields.get("mch_billno", "")
    first_time = redis_client().hsetnx(PAID_KEY, bill, json.dumps(fields))
    _record(
        "pay.sendredpack",
        {
            "mch_billno": bill,
            "amount": fields.get("total_amount"),
            "openid": fields.get("re_openid"),
            "paid_now": bool(first_time),
        },
    )
    return _pay_xml(
        {
            "return_code": "SUCCESS",
            "result_code": "SUCCESS",
            "mch_billno": bill,
            "send_listid": f"sandbox{hashlib.md5(bill.encode()).hexdigest()[:20]}",  # noqa: S324 - an id, not security
            "total_amount": fields.get("total_amount"),
        }
    )


@blp.post("/wechat-pay/mmpaymkttransfers/gethbinfo")
def red_packet_info() -> Response:
    bill = _pay_request().get("mch_billno", "")
    _record("pay.gethbinfo", {"mch_billno": bill})
    if not redis_client().hexists(PAID_KEY, bill):
        return _pay_xml(
            {
                "return_code": "SUCCESS",
                "result_code": "FAIL",
                "err_code": "NOT_FOUND",
                "err_code_des": "指定单号数据不存在",
            }
        )
    return _pay_xml({"return_code": "SUCCESS", "result_code": "SUCCESS", "mch_billno": bill, "status": "RECEIVED"})


def init_app(app: Any) -> None:
    if not settings_of(app).is_production:
        app.register_blueprint(blp)


__all__ = ["blp", "current_app", "init_app", "recorded_calls"]
