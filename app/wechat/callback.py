"""``GET/POST /wechat/callback``: WeChat's URL verification and message push (thin handler)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from app.config import current_settings
from app.core.errors import PayloadTooLarge
from app.wechat import protocol, router

blp = Blueprint("wechat_callback", __name__)


@blp.get("/wechat/callback")
def verify() -> Response:
    """URL verification: echo ``echostr`` when the signature is right."""
    settings = current_settings()
    protocol.verify_url(settings.WECHAT_TOKEN, request.args, window=settings.SIGNATURE_WINDOW_SECONDS)
    return Response(request.args.get("echostr", ""), mimetype="text/plain")


@blp.post("/wechat/callback")
def receive() -> Response:
    settings = current_settings()
    if (request.content_length or 0) > protocol.MAX_CALLBACK_BYTES:
        raise PayloadTooLarge()
    body = request.get_data(cache=False)
    protocol.verify_url(settings.WECHAT_TOKEN, request.args, window=settings.SIGNATURE_WINDOW_SECONDS)
    keys = {"token": settings.WECHAT_TOKEN, "aes_key": settings.WECHAT_AES_KEY, "app_id": settings.WECHAT_APP_ID}
    envelope = protocol.open_envelope(body, request.args, **keys, safe_mode_only=settings.WECHAT_SAFE_MODE_ONLY)
    message = protocol.read_message(envelope.xml)
    reply = router.handle(message, envelope.xml, protocol.signed_nonce(request.args))
    if reply is None:
        return Response("success", mimetype="text/plain")
    return Response(protocol.seal(reply, envelope, **keys), mimetype="application/xml")
