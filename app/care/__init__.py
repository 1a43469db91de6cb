"""Care (会员关怀): notifications to members, subscribe-message grants, reminders."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Subscription endpoints; subscriptions to other packages' events (``care.events``)."""
    from app.care import api, events  # noqa: F401 - importing events connects its subscribers
    from app.core.http import api_of

    api_of(app).register_blueprint(api.blp)
