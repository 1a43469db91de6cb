"""Back-office sign-in."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import Length


class SignInArgs(ma.Schema):
    username = ma.fields.String(required=True, validate=Length(min=1, max=64))
    password = ma.fields.String(required=True, validate=Length(min=1, max=256), load_only=True)


class SessionSchema(ma.Schema):
    token = ma.fields.String()
    expires_in = ma.fields.Integer(metadata={"description": "seconds"})
    username = ma.fields.String()
    name = ma.fields.String()
    role = ma.fields.String()
