"""A mini-app code image kept on the row it opens (a referral code, a benefit share).

WeChat's ``getwxacodeunlimit`` has no cap on how many codes it makes, but each call costs a
round trip of a few hundred milliseconds and counts against the access token's rate: the image
is asked for once and served from the row afterwards (the scene never changes for a row).
"""

from __future__ import annotations

from typing import Any

from app.core.clock import utcnow
from app.core.db import db
from app.gateways import mini_app


def cached_unlimited_code(row: Any, *, scene: str, page: str) -> bytes:
    """``row``'s mini-app code (``row.wxacode_png``, ``row.wxacode_at``), asked of WeChat the first time."""
    if row.wxacode_png is None:
        row.wxacode_png = mini_app().unlimited_code(scene, page=page)
        row.wxacode_at = utcnow()
        db.session.flush()
    return row.wxacode_png
