"""One error type carrying the HTTP status and a stable code; the API renders it as {"error": {...}}."""

from __future__ import annotations


class QAError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class ConfigError(QAError):
    status = 500
    code = "config_error"


class BadRequest(QAError):
    status = 422
    code = "invalid_request"


class NotFound(QAError):
    status = 404
    code = "not_found"


class PayloadTooLarge(QAError):
    status = 413
    code = "payload_too_large"


class BackendUnavailable(QAError):
    status = 503
    code = "backend_unavailable"


class BackendTimeout(QAError):
    status = 504
    code = "backend_timeout"


class NotReady(QAError):
    status = 503
    code = "not_ready"


class Unauthorized(QAError):
    status = 401
    code = "unauthorized"


class RateLimited(QAError):
    status = 429
    code = "rate_limited"


class Busy(QAError):
    status = 503
    code = "busy"
