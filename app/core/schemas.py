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

from app.core.clock import EARLIEST_DAY, LATEST_DAY, within_calendar
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


class WithinCalendar(ma.validate.Validator):
    """A date or an aware datetime within the program's calendar (``clock.within_calendar``)."""

    def __call__(self, value: dt.date) -> dt.date:
        if not within_calendar(value):
            message = _l("Must be between {min} and {max}.")
            raise ma.ValidationError(str(message).format(min=EARLIEST_DAY, max=LATEST_DAY))
        return value


def Day(**kwargs: Any) -> ma.fields.Date:
    """``ma.fields.Date`` within the program's calendar (any ``validate`` given runs too)."""
    return ma.fields.Date(**_within_calendar(kwargs))


def Moment(**kwargs: Any) -> ma.fields.AwareDateTime:
    """``ma.fields.AwareDateTime`` (an offset required) within the program's calendar."""
    return ma.fields.AwareDateTime(**_within_calendar(kwargs))


def _within_calendar(kwargs: dict[str, Any]) -> dict[str, Any]:
    given = kwargs.get("validate")
    given = [] if given is None else list(given) if isinstance(given, list | tuple) else [given]
    return {**kwargs, "validate": [*given, WithinCalendar()]}


class PageArgs(ma.Schema):
    """``?page=1&per_page=20`` with sane bounds; every list endpoint uses it."""

    page = ma.fields.Integer(load_default=1, validate=Range(min=1, max=10_000))
    per_page = ma.fields.Integer(load_default=20, validate=Range(min=1, max=100))


def page_of(items: list, *, page: int, per_page: int, total: int) -> dict:
    return {"items": items, "page": page, "per_page": per_page, "total": total}


class _Unsure(Exception):
    """The quick check cannot vouch for the document: marshmallow's full load decides."""


#: Fields that load a JSON value of this type as it is (then only their validators run).
_PLAIN: dict[type, type] = {ma.fields.String: str, ma.fields.Integer: int, Money: int}
#: Hooks the quick check can run itself (field validators, whole-schema validators); a schema
#: with any other hook (pre_load, post_load, pass_original, many) is always loaded in full.
_QUICK_HOOKS = {"validates", "validates_schema"}


def _quick(schema: ma.Schema, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Unsure
    hooks = schema._hooks
    if any(entries for tag, entries in hooks.items() if tag not in _QUICK_HOOKS):
        raise _Unsure
    fields = _load_keys(schema)
    if schema.unknown != ma.RAISE or not data.keys() <= fields.keys():
        raise _Unsure  # an unknown field (or another policy for them): marshmallow words it
    loaded: dict[str, Any] = {}
    for key, (name, field) in fields.items():
        if key in data:
            loaded[field.attribute or name] = _quick_field(field, key, data)
        elif field.required:
            raise _Unsure
        elif field.load_default is not ma.missing:
            default = field.load_default
            loaded[field.attribute or name] = default() if callable(default) else default
    _run_validator_hooks(schema, loaded)
    return loaded


#: ISO dates and times as marshmallow reads them (``Date`` / ``DateTime`` with format "iso").
_ISO_FORMATS = ("iso", "iso8601")


def _quick_value(field: ma.fields.Field, value: Any) -> Any:
    """What ``field._deserialize`` returns for the plainest JSON shapes, without marshmallow's
    calls around it; ``_Unsure`` for anything else (then the field deserializes it itself)."""
    kind = type(field)
    if kind is ma.fields.Date and type(value) is str and field.format in _ISO_FORMATS:
        return dt.date.fromisoformat(value)  # Date's "iso" function; ValueError: marshmallow words it
    if kind is ma.fields.AwareDateTime and type(value) is str and field.format in _ISO_FORMATS:
        loaded = dt.datetime.fromisoformat(value)  # DateTime's "iso" function
        if loaded.tzinfo is None or loaded.tzinfo.utcoffset(loaded) is None:
            raise _Unsure  # naive: refused, or given the field's default zone, by marshmallow
        return loaded
    if kind is ma.fields.Dict and type(value) is dict and field.key_field is None and field.value_field is None:
        return dict(value)  # Mapping._deserialize without key or value fields: a copy
    if kind is ma.fields.List and type(value) is list:
        inner = field.inner
        plain = _PLAIN.get(type(inner))
        if plain is None or inner.pre_load or inner.post_load:
            raise _Unsure
        for each in value:
            if type(each) is not plain:
                raise _Unsure
            _check(inner, each)
        return list(value)
    raise _Unsure


def _quick_field(field: ma.fields.Field, key: str, data: dict[str, Any]) -> Any:
    value = data[key]
    if type(field) is ma.fields.Nested and not field.many and not field.validators and value is not None:
        nested = field.schema
        if nested.only or nested.exclude or nested.partial or field.unknown is not None:
            raise _Unsure
        return _quick(nested, value)
    try:
        if field.pre_load or field.post_load:
            return field.deserialize(value, key, data)
        if type(value) is _PLAIN.get(type(field)):  # what marshmallow would return unchanged
            _check(field, value)
            return value
        try:
            loaded = _quick_value(field, value)
        except (_Unsure, ValueError):
            return field.deserialize(value, key, data)
        _check(field, loaded)
        return loaded
    except ma.ValidationError:
        raise _Unsure from None


def _check(field: ma.fields.Field, value: Any) -> None:
    """The field's validators, as ``Field._validate`` runs them (marshmallow 4 ignores what they
    return: only a ``ValidationError`` refuses)."""
    for validator in field.validators:
        validator(value)


def _run_validator_hooks(schema: ma.Schema, loaded: dict[str, Any]) -> None:
    """``@validates`` and ``@validates_schema`` on the loaded values, as ``Schema.load`` runs them."""
    hooks = schema._hooks
    try:
        for attr_name, _many, options in hooks["validates"]:
            for field_name in options["field_names"]:
                field = schema.fields[field_name]
                if (field.attribute or field_name) in loaded:
                    validate = getattr(schema, attr_name)
                    validate(loaded[field.attribute or field_name], data_key=field.data_key or field_name)
        for attr_name, many, options in hooks["validates_schema"]:
            if many or options.get("pass_original"):
                raise _Unsure
            getattr(schema, attr_name)(loaded, partial=None, many=False, unknown=schema.unknown)
    except ma.ValidationError:
        raise _Unsure from None


def _load_keys(schema: ma.Schema) -> dict[str, tuple[str, ma.fields.Field]]:
    """The input keys of a schema's loadable fields → (field name, field); built once per schema."""
    keys = schema.__dict__.get("_quick_load_keys")
    if keys is None:
        keys = {field.data_key or name: (name, field) for name, field in schema.load_fields.items()}
        schema.__dict__["_quick_load_keys"] = keys
    return keys


def quick_load(schema: ma.Schema, data: Any) -> dict[str, Any] | None:
    """``schema.load(data)`` for a document marshmallow accepts, at a fraction of its cost; None
    when it cannot vouch for the document (anything it rejects, or a construct it does not know),
    so that the caller runs ``schema.load`` and gets marshmallow's own messages.

    It only skips the schema machinery around the fields: each field is still deserialized and
    validated by marshmallow itself (``Field.deserialize``), nested schemas are walked the same way,
    unknown and missing required fields are refused, and ``@validates`` / ``@validates_schema``
    hooks are run. A schema with other hooks is not vouched for."""
    try:
        return _quick(schema, data)
    except _Unsure:
        return None
