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


def _kind(name: str, status: int, code: str, doc: str) -> type[QAError]:
    """A QAError subclass with its status and default code: the kinds differ only in those."""
    return type(name, (QAError,), {"status": status, "code": code, "__doc__": doc, "__module__": __name__})


ConfigError = _kind("ConfigError", 500, "config_error", "A setting, prompt file or model the service needs is missing or wrong.")
BadRequest = _kind("BadRequest", 422, "invalid_request", "The request is well formed JSON but asks for something the service refuses.")
NotEnabled = _kind("NotEnabled", 409, "not_enabled", "The request needs a feature this server's settings leave off (the reader).")
NotFound = _kind("NotFound", 404, "not_found", "No such document.")
PayloadTooLarge = _kind("PayloadTooLarge", 413, "payload_too_large", "Over a size limit: a body, a document, or a question for the context.")
BackendUnavailable = _kind("BackendUnavailable", 503, "backend_unavailable", "Chroma or the LLM cannot be reached, or answered with an error.")
BackendTimeout = _kind("BackendTimeout", 504, "backend_timeout", "The LLM did not answer in time.")
NotReady = _kind("NotReady", 503, "not_ready", "Models are still loading, or failed to load.")
Unauthorized = _kind("Unauthorized", 401, "unauthorized", "This endpoint needs an API key and none (or a wrong one) was sent.")
RateLimited = _kind("RateLimited", 429, "rate_limited", "The caller's request rate is over the limit.")
Busy = _kind("Busy", 503, "busy", "Every slot is taken (generations, requests, or the store's writer lock).")
EncoderMismatch = _kind(
    "EncoderMismatch", 409, "encoder_mismatch", "The collection's vectors were made by another encoder than this process's."
)


def encoder_mismatch(made_by: str, mine: str, advice: str) -> QAError:
    return EncoderMismatch(f"this collection's vectors were made by the encoder {made_by!r}, and this process encodes with {mine!r}: {advice}")


def refuse_stale_encoder(made_by: str | None, mine: str) -> None:
    """Another process embedded the collection again with another encoder since this one opened it: this process's
    vectors, written or asked, belong to another model's space (or another dimension). None: nothing recorded yet."""
    if made_by is not None and made_by != mine:
        raise encoder_mismatch(made_by, mine, "restart this process with the same encoder settings")
