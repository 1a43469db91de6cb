"""HTTP edge: request ids, the unit of work per request, and the one JSON error shape."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

import flask_smorest
import marshmallow as ma
import redis
import requests
import sqlalchemy as sa
from flask import Flask, Response, current_app, g, has_request_context, jsonify, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_smorest import Api
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from app.config import settings_of
from app.core.db import db
from app.core.errors import AppError, PartnerFailure, ServiceUnavailable, UpstreamUnavailable, ValidationFailed
from app.core.i18n import _l, gettext
from app.core.schemas import quick_load
from app.core.security import verify_timestamped_signature

log = logging.getLogger(__name__)

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch: no trailing newline

_HTTP_CODES: dict[int, tuple[str, Any]] = {
    400: ("bad_request", _l("The request could not be understood.")),
    401: ("unauthenticated", _l("Please sign in again.")),
    403: ("forbidden", _l("You are not allowed to do this.")),
    404: ("not_found", _l("Not found.")),
    405: ("method_not_allowed", _l("This method is not allowed here.")),
    409: ("conflict", _l("This conflicts with the current state.")),
    413: ("payload_too_large", _l("The request body is too large.")),
    415: ("unsupported_media_type", _l("This content type is not supported.")),
    422: ("validation_failed", _l("Some fields are invalid.")),
    429: ("rate_limited", _l("Too many requests. Please try again later.")),
    500: ("internal_error", _l("Something went wrong on our side. Please try again.")),
    503: ("service_unavailable", _l("The service is temporarily unavailable.")),
}


_NUL_MESSAGE = _l("Contains a character that is not allowed.")


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_contains_nul(item) for item in value)
    return False


def parse_json(raw: bytes | str) -> Any:
    """``json.loads`` for bodies from outside: every way a body can be unparseable is a
    ``json.JSONDecodeError``, including what the standard library raises otherwise (a
    ``ValueError`` for an integer longer than ``sys.get_int_max_str_digits()``, a
    ``RecursionError`` for arrays nested tens of thousands deep, a ``UnicodeDecodeError``)."""
    try:
        return webargs_core.parse_json(raw)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(f"unparseable JSON ({type(exc).__name__})", doc="<body>", pos=0) from None


def load_signed_envelope(
    raw_body: bytes, timestamp: str | None, signature: str | None, *, secret: str, schema: ma.Schema
) -> dict[str, Any]:
    """A partner webhook (DMS, CRM): the signature over the raw bytes first (401), then the JSON
    object and its envelope schema (422 with field messages). Returns the loaded envelope."""
    verify_timestamped_signature(
        secret=secret,
        timestamp=timestamp,
        signature=signature,
        body=raw_body,
        window_seconds=settings_of(current_app).SIGNATURE_WINDOW_SECONDS,
    )
    try:
        document = parse_json(raw_body)
    except json.JSONDecodeError:
        raise ValidationFailed(fields={"body": [_l("Invalid JSON body.")]}) from None
    if not isinstance(document, dict):
        raise ValidationFailed(fields={"body": [_l("The body must be a JSON object.")]})
    try:
        return schema.load(document)
    except ma.ValidationError as err:
        raise ValidationFailed(fields=err.normalized_messages()) from None


def signed_webhook_doc(
    blp: flask_smorest.Blueprint,
    *,
    summary: str,
    description: str,
    schema: type[ma.Schema],
    accepted: type[ma.Schema],
    keyed_with: str,
) -> Any:
    """The OpenAPI of a partner webhook signed with ``X-Timestamp`` / ``X-Signature`` (see
    :func:`load_signed_envelope`): 202 stored, 200 a repeat, 401 the signature, 422 the fields."""
    parameters = [
        {"name": "X-Timestamp", "in": "header", "required": True, "schema": {"type": "string"}},
        {
            "name": "X-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": f'sha256=<hex HMAC-SHA256 of "<X-Timestamp>.<raw body>"> keyed with {keyed_with}',
        },
    ]
    decorators = [
        blp.doc(
            summary=summary,
            description=description,
            parameters=parameters,
            requestBody={"required": True, "content": {"application/json": {"schema": schema}}},
        ),
        blp.response(202, accepted, description="Stored; processing is queued"),
        blp.alt_response(200, schema=accepted, description="Already received; ignored", success=True),
        blp.alt_response(401, response="UNAUTHORIZED"),
        blp.alt_response(422, response="UNPROCESSABLE_ENTITY"),
    ]

    def decorate(view: Any) -> Any:
        for decorator in reversed(decorators):
            view = decorator(view)
        return view

    return decorate


class TextSafeParser(FlaskParser):
    """Refuses NUL characters in any argument, field by field: PostgreSQL text cannot hold them and
    no legitimate client sends them. JSON bodies are read with :func:`parse_json`: hostile JSON is
    a 400, never a 500."""

    def _raw_load_json(self, req: Any) -> Any:
        if not is_json_request(req):
            return webargs_core.missing
        return parse_json(req.get_data(cache=True))

    def _load_location_data(self, *, schema: ma.Schema, req: Any, location: str) -> Any:
        data = super()._load_location_data(schema=schema, req=req, location=location)
        if isinstance(data, Mapping):
            bad = {str(key): [str(_NUL_MESSAGE)] for key, value in data.items() if _contains_nul((key, value))}
        else:
            bad = {"_schema": [str(_NUL_MESSAGE)]} if _contains_nul(data) else {}
        if bad:
            raise ma.ValidationError(bad)
        return data

    def _process_location_data(  # noqa: PLR0917 - webargs' own signature
        self,
        location_data: Any,
        schema: ma.Schema,
        req: Any,
        location: str,
        unknown: str | None,
        validators: Any,
    ) -> Any:
        """A JSON body of a schema that asks for it (``QUICK_LOAD``, the mall's redemption) is
        loaded by ``schemas.quick_load`` when it can vouch for it (the same fields, validators and
        values, without marshmallow's machinery around them); anything it cannot vouch for, and
        every other schema, is loaded by marshmallow as before (its messages for every 422)."""
        if (
            getattr(schema, "QUICK_LOAD", False)
            and location == "json"
            and unknown in (None, webargs_core._UNKNOWN_DEFAULT_PARAM)
            and self.unknown == webargs_core._UNKNOWN_DEFAULT_PARAM
            and not validators
            and isinstance(location_data, dict)
        ):
            quick = quick_load(schema, location_data)
            if quick is not None:
                return quick
        return super()._process_location_data(location_data, schema, req, location, unknown, validators)


class Blueprint(flask_smorest.Blueprint):
    """The API's blueprint: flask-smorest's, with arguments parsed by :class:`TextSafeParser`."""

    ARGUMENTS_PARSER = TextSafeParser()


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Stable machine-readable code"})
    message = ma.fields.String(required=True, metadata={"description": "Localized, for people"})
    fields = ma.fields.Dict(metadata={"description": "Field name → list of localized messages"})
    details = ma.fields.Dict()


class ErrorSchema(ma.Schema):
    """The one error shape of the API."""

    error = ma.fields.Nested(ErrorBodySchema, required=True)
    request_id = ma.fields.String()


class LoyaltyApi(Api):
    """flask-smorest ``Api`` that renders every HTTP error in our error shape."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        # A failure in an after-request hook (the edge's commit) reaches us wrapped in a 500.
        original = getattr(error, "original_exception", None)
        if isinstance(original, INFRASTRUCTURE_DOWN):
            return _handle_infrastructure_down(original)
        status = error.code or 500
        code, default_message = _HTTP_CODES.get(status, ("error", error.description or ""))
        data = getattr(error, "data", None) or {}
        fields = data.get("errors") or data.get("messages")
        if fields is not None:
            fields = _unwrap_locations(fields)
        headers = dict(data.get("headers") or {})
        if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        return error_response(status, code, data.get("message") or default_message, fields=fields, headers=headers)


def _unwrap_locations(messages: dict[str, Any]) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {...}}); clients only need the fields."""
    if len(messages) == 1:
        ((location, inner),) = messages.items()
        if location in {"json", "query", "form", "headers", "files", "path", "view_args"} and isinstance(inner, dict):
            return inner
    return messages


def localize_messages(messages: Any) -> Any:
    """Translate nested validation messages; marshmallow's fixed texts are catalog entries."""
    if isinstance(messages, dict):
        return {str(key): localize_messages(value) for key, value in messages.items()}
    if isinstance(messages, list | tuple):
        return [localize_messages(value) for value in messages]
    return gettext(str(messages)) if messages is not None else messages


def current_request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def error_response(
    status: int,
    code: str,
    message: Any,
    *,
    fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": str(message)}
    if fields:
        body["fields"] = localize_messages(fields)
    if details:
        body["details"] = details
    response = jsonify({"error": body, "request_id": current_request_id()})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_app_error(error: AppError) -> Response:
    return error_response(
        error.status,
        error.code,
        error.message,
        fields=error.fields,
        headers=error.headers,
        details=error.details,
    )


#: Our own infrastructure failing: the database or Redis unreachable, a connection lost, a
#: statement cancelled by ``statement_timeout``, the pool exhausted. Transient: 503, retry later.
INFRASTRUCTURE_DOWN: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    redis.ConnectionError,
    redis.TimeoutError,
)
RETRY_AFTER_SECONDS = "5"


def _handle_infrastructure_down(error: Exception) -> Response:
    """PostgreSQL or Redis failed under a request: 503 with ``Retry-After``, never a 500.

    The unit of work rolls back (error status). Logged without the statement and its parameters
    (they can hold personal data): the driver's own message says what failed.
    """
    log.error("infrastructure unavailable: %s: %s", type(error).__name__, getattr(error, "orig", None) or error)
    return _handle_app_error(ServiceUnavailable(headers={"Retry-After": RETRY_AFTER_SECONDS}))


def _handle_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return api_of(current_app).handle_http_exception(error)
    log.exception("unhandled error", exc_info=error)
    code, message = _HTTP_CODES[500]
    return error_response(500, code, message)


def _handle_upstream_failure(error: Exception) -> Response:
    """A partner call that failed and that no service turned into a domain error: 503, retry later.

    Nothing was committed (the unit of work rolls back on any error status).
    """
    log.warning("upstream call failed: %r", error)
    return _handle_app_error(UpstreamUnavailable(headers={"Retry-After": RETRY_AFTER_SECONDS}))


def _refuse_nul_in_path() -> None:
    if "\x00" in request.path:
        raise ValidationFailed(fields={"path": [_NUL_MESSAGE]})


def _assign_request_id() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex


_KEPT_ROWS = "loyalty_kept_rows"


def keep_whatever_happens(row: Any) -> None:
    """Write ``row`` whatever the request's outcome: with its unit of work when that commits, else
    in a short transaction of its own after the rollback (the audit row of a refused or missed
    read). Outside a request it simply joins the current session (the CLI commits it)."""
    if not has_request_context():
        db.session.add(row)
        return
    g.setdefault(_KEPT_ROWS, []).append(row)


def _write_apart(rows: list[Any]) -> None:
    """A separate session (its own connection and transaction), committed now. It runs after the
    request's transaction has ended, so it can never wait on a lock that transaction holds."""
    session = db.session_factory()
    try:
        session.add_all(rows)
        session.commit()
    except Exception:
        session.rollback()
        log.exception("could not write %d row(s) kept apart from a failed request", len(rows))
    finally:
        session.close()


def _finish_unit_of_work(response: Response) -> Response:
    """Commit once at the edge when the handler succeeded; otherwise throw the work away (but
    write the rows kept whatever happens in a transaction of their own)."""
    kept = g.pop(_KEPT_ROWS, [])
    if response.status_code < 400:
        if kept:
            db.session.flush()  # the request's own writes first: the audit chain's lock comes last
            db.session.add_all(kept)
            kept = []
        if db.session.registry.has():  # else the request never touched the database
            db.session.commit()
    elif db.session.registry.has():
        db.session.rollback()
    if kept:
        _write_apart(kept)
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


#: Every response: no MIME sniffing, no framing (clickjacking), no Referer leaving the site.
_ALWAYS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
HSTS = "max-age=31536000"
#: Paths whose answers carry personal data: no cache (browser, proxy, WeChat's webview) keeps them.
_NO_STORE_PREFIXES = ("/api/", "/wechat/")
_CACHEABLE = {"/api/openapi.json"}


def security_headers(response: Response) -> Response:
    """Security headers on every response. HSTS only when the request came over TLS (directly, or
    through a trusted proxy's ``X-Forwarded-Proto``: ``LOYALTY_PROXY_HOPS``)."""
    for name, value in _ALWAYS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(_NO_STORE_PREFIXES) and request.path not in _CACHEABLE:
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


#: Paths whose requests never use Flask's cookie session (``without_session``).
_SESSIONLESS_PATHS: set[str] = set()


def without_session(path: str) -> None:
    """Requests to ``path`` (a signed partner webhook: no cookies, nothing kept between requests)
    get Flask's null session instead of the cookie session: opening that one builds its signing
    serializer and reads the cookies on every request (~50 µs of CPU) for nothing here."""
    _SESSIONLESS_PATHS.add(path)


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's own cookie session, except on the paths registered with ``without_session``."""

    def open_session(self, app: Flask, request: Any) -> SessionMixin | None:
        if request.path in _SESSIONLESS_PATHS:
            return None  # Flask then makes its null session (empty; writing to it raises), never saved
        return super().open_session(app, request)


def trust_proxies(app: Flask, hops: int) -> None:
    """Behind ``hops`` reverse proxies, take the client's address and scheme from X-Forwarded-*."""
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]


BIGINT_MAX = 2**63 - 1
_API_KEY = "loyalty.api"


class RowIdConverter(IntegerConverter):
    """``<id:name>``: a positive row id that fits PostgreSQL's bigint (larger ones are a plain 404)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # werkzeug passes the url map first
        super().__init__(map, min=1, max=BIGINT_MAX)


def api_of(app: Flask) -> LoyaltyApi:
    """The app's flask-smorest ``Api``: packages register their blueprints on it (OpenAPI)."""
    return app.extensions[_API_KEY]


def init_app(app: Flask) -> LoyaltyApi:
    """Request ids, the unit of work per request, the error shape, security headers, and the
    OpenAPI ``Api`` (Swagger UI at /api/docs only when ``LOYALTY_API_DOCS``)."""
    if not settings_of(app).API_DOCS:
        app.config["OPENAPI_SWAGGER_UI_PATH"] = None
    app.url_map.converters["id"] = RowIdConverter
    api = LoyaltyApi(app)  # one per app: flask-smorest keeps the OpenAPI spec on the Api object
    api.register_converter(
        RowIdConverter, lambda _: {"type": "integer", "format": "int64", "minimum": 1, "maximum": BIGINT_MAX}
    )
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "Back office: POST /api/v1/cs/sessions"}
    )
    api.spec.components.security_scheme(
        "miniappSession", {"type": "http", "scheme": "bearer", "description": "Mini-app: POST /api/v1/sessions"}
    )
    app.extensions[_API_KEY] = api
    app.session_interface = _CookieSessions()
    app.before_request(_assign_request_id)
    app.before_request(_refuse_nul_in_path)
    app.after_request(_finish_unit_of_work)
    app.after_request(security_headers)
    app.register_error_handler(AppError, _handle_app_error)
    for upstream_error in (requests.RequestException, PartnerFailure):
        app.register_error_handler(upstream_error, _handle_upstream_failure)
    for infrastructure_error in INFRASTRUCTURE_DOWN:
        app.register_error_handler(infrastructure_error, _handle_infrastructure_down)
    app.register_error_handler(Exception, _handle_unexpected)
    return api
