"""QR code images (PNG) for any text: enrollment codes, member codes, vouchers."""

from __future__ import annotations

import io

import qrcode


def qr_png(content: str, box_size: int = 8) -> bytes:
    """``content`` as a QR code image (PNG)."""
    image = qrcode.make(content, box_size=box_size, border=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
