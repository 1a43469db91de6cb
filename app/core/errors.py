"""One error hierarchy, rendered as one JSON shape by ``app.core.http``.

Every error a client sees looks like::

    {"error": {"code": "validation_failed", "message": "<localized>", "fields": {...}},
     "request_id": "..."}

Services raise these; handlers never build error responses by hand.
"""

from __future__ import annotations

from typing import Any

from app.core.i18n import _l


class AppError(Exception):
    """Base of every error meant for a client. Subclasses fix status and code."""

    status: int = 400
    code: str = "bad_request"
    default_message: Any = _l("The request could not be processed.")

    def __init__(
        self,
        message: Any = None,
        *,
        fields: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        self.fields = fields
        self.details = details
        self.headers = headers or {}
        super().__init__(str(self.message))


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"
    default_message = _l("Some fields are invalid.")


class BadSignature(AppError):
    status = 401
    code = "bad_signature"
    default_message = _l("The request signature is missing or invalid.")


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"
    default_message = _l("Please sign in again.")


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    default_message = _l("You are not allowed to do this.")


class NotFound(AppError):
    status = 404
    code = "not_found"
    default_message = _l("Not found.")


class Conflict(AppError):
    status = 409
    code = "conflict"
    default_message = _l("This conflicts with the current state.")


class TooManyRequests(AppError):
    status = 429
    code = "rate_limited"
    default_message = _l("Too many requests. Please try again later.")


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    default_message = _l("The request body is too large.")


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    default_message = _l("The service is temporarily unavailable.")


class PartnerFailure(Exception):
    """Base of the gateway errors (``app.gateways``): a partner call that failed. A service that
    can carry on catches it; one that reaches a request handler answers 503 upstream_unavailable."""


class UpstreamUnavailable(ServiceUnavailable):
    """A partner system (WeChat, WeChat Pay, SMS, CRM) failed while serving a request."""

    code = "upstream_unavailable"
    default_message = _l("A partner service did not answer. Please try again in a moment.")
