"""The WeChat service account channel: the callback, the chat and menu, QR scans, the simulator.
The only package that imports wechatpy."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """The callback, its deferred handlers, ``flask wechat`` and the sandbox fake."""
    from app.wechat import callback, cli, deferred, sandbox  # noqa: F401 - deferred registers its handlers

    app.register_blueprint(callback.blp)
    sandbox.init_app(app)
    app.cli.add_command(cli.wechat_cli)
