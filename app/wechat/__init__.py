"""The WeChat service account channel: the callback, the chat and menu, QR scans, the simulator.
The only package that imports wechatpy."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """The gateways (real, or the sandbox fakes), the callback, its deferred handlers, ``flask wechat``."""
    from app.core import ratelimit
    from app.wechat import callback, cli, deferred, gateways  # noqa: F401 - deferred registers its handlers

    gateways.install(app)
    app.register_blueprint(callback.blp)
    ratelimit.skip_request_check("wechat_callback.receive")  # it limits each sender itself (router)
    app.cli.add_command(cli.wechat_cli)
