"""Complaints: what a member complained about, where it stands, how it was resolved (SPEC §12)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """No blueprint of its own: the console (``app/console``) is its channel. Its merge participant
    registers on import."""
    from app.complaints import merging  # noqa: F401 - registers the merge participant
