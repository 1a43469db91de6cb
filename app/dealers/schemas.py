"""Dealer lists for the mini-app."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import Length, PageArgs, Range


class DealerQueryArgs(PageArgs):
    city = ma.fields.String(validate=Length(max=64))
    region = ma.fields.String(validate=Length(max=32))


class DealerSchema(ma.Schema):
    code = ma.fields.String()
    name = ma.fields.String()
    region = ma.fields.String()
    city = ma.fields.String()
    address = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    latitude = ma.fields.Float(allow_none=True)
    longitude = ma.fields.Float(allow_none=True)
    distance_km = ma.fields.Float(allow_none=True)


class DealerPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DealerSchema))
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()


class NearestArgs(ma.Schema):
    latitude = ma.fields.Float(required=True, validate=Range(min=-90, max=90))
    longitude = ma.fields.Float(required=True, validate=Range(min=-180, max=180))
    limit = ma.fields.Integer(load_default=3, validate=Range(min=1, max=20))
