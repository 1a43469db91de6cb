"""The production app plus the floor for the callback benchmark: signature check + XML parse only."""

from flask import Response, request

from app import create_app
from app.wechat import protocol

app = create_app()


@app.post("/bench/wechat-bare")
def bare() -> Response:
    settings = app.extensions["loyalty.settings"]
    protocol.verify_url(settings.WECHAT_TOKEN, request.args, window=settings.SIGNATURE_WINDOW_SECONDS)
    protocol.parse_xml(request.get_data(cache=False))
    return Response("success", mimetype="text/plain")
