"""Schema base and validators whose messages are translated when they are raised.

marshmallow formats validator messages at validation time, inside the request, so a lazy string
passed as the message renders in the request's locale. Use these instead of
``marshmallow.validate`` in our schemas.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import marshmallow as ma

from app.core.i18n import _l


class BaseSchema(ma.Schema):
    """Rejects unknown fields (a typo in a partner payload should be loud, not silently dropped)."""

    class Meta:
        unknown = ma.RAISE


class OneOf(ma.validate.OneOf):
    default_message = _l("Must be one of: {choices}.")


class Length(ma.validate.Length):
    message_min = _l("Must be at least {min} characters.")
    message_max = _l("Must be at most {max} characters.")
    message_all = _l("Must be between {min} and {max} characters.")
    message_equal = _l("Must be exactly {equal} characters.")


class Range(ma.validate.Range):
    def __init__(self, min: Any = None, max: Any = None, *, error: str | None = None) -> None:
        super().__init__(min, max, error=error)
        self.message_min = _l("Must be at least {min}.")
        self.message_max = _l("Must be at most {max}.")
        self.message_all = _l("Must be between {min} and {max}.")


class Regexp(ma.validate.Regexp):
    """marshmallow's ``Regexp``, but the whole value must match: with ``re.match`` a pattern ending
    in ``$`` still accepts a trailing newline (``"abc\\n"``)."""

    default_message = _l("Invalid format.")

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


#: Anchored for the OpenAPI ``pattern``; matched with ``fullmatch`` (``Regexp``) all the same.
IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9._:\-]+$")


def identifier(max_length: int = 64) -> list[ma.validate.Validator]:
    """An external id: 1..max_length of letters, digits and ``._:-``."""
    return [Length(min=1, max=max_length), Regexp(IDENTIFIER_RE)]


class Money(ma.fields.Integer):
    """An amount in integer fen (分); never a float."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("strict", True)
        kwargs.setdefault("validate", Range(min=0))
        kwargs.setdefault("metadata", {"description": "Amount in fen (1/100 CNY)"})
        super().__init__(**kwargs)


_MONTH = re.compile(r"(20\d\d)-(0[1-9]|1[0-2])")


def parse_month(value: str) -> dt.date | None:
    """``YYYY-MM`` (years 2000–2099) → the first day of that month; None when malformed."""
    match = _MONTH.fullmatch(value or "")  # whole string: "2026-11\n" is no month
    return dt.date(int(match[1]), int(match[2]), 1) if match else None


class Month(ma.fields.Field):
    """A calendar month written ``YYYY-MM``; loads as the first day of the month."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.date:
        month = parse_month(value) if isinstance(value, str) else None
        if month is None:
            raise ma.ValidationError(str(_l("Use the form YYYY-MM.")))
        return month

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else f"{value.year:04d}-{value.month:02d}"


class PageArgs(ma.Schema):
    """``?page=1&per_page=20`` with sane bounds; every list endpoint uses it."""

    page = ma.fields.Integer(load_default=1, validate=Range(min=1, max=10_000))
    per_page = ma.fields.Integer(load_default=20, validate=Range(min=1, max=100))


def page_of(items: list, *, page: int, per_page: int, total: int) -> dict:
    return {"items": items, "page": page, "per_page": per_page, "total": total}
