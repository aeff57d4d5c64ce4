"""Pure ASGI middleware: a cap on requests in progress, a cap on body size, the security headers, and the request
log and metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa_service.api.errors import error_response, qa_error_response
from qa_service.api.guards import Slots
from qa_service.errors import QAError
from qa_service.metrics import LATENCY, REQUESTS, log_fields

access_log = logging.getLogger("qa_service.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


class SecurityHeaders:
    """Adds the headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class InflightLimit:
    """At most `slots.limit` HTTP requests in progress; one more is answered 503 at once, never queued."""

    def __init__(self, app: ASGIApp, slots: Slots) -> None:
        self.app = app
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            release = self.slots.acquire()
        except QAError as exc:
            await qa_error_response(exc)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            release()


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, counting the bytes as they arrive (Content-Length may lie
    or be absent). A body within the limit is buffered and replayed to the app unchanged."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> ASGIApp:
        return error_response(413, "payload_too_large", f"request body over {self.limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared and declared.isdigit() and int(declared) > self.limit:
            await self._too_large()(scope, receive, send)
            return
        if scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._too_large()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class RequestLog:
    """One log line and the request metrics per HTTP request, with a request id: the caller's `X-Request-ID` when it
    is a plain token (letters, digits, `._:-`, up to 128), else a new one; returned in the response's `X-Request-ID`.
    The route is the template (`/v1/documents/{doc_id}`), so ids never become metric labels."""

    def __init__(self, app: ASGIApp, collection: str) -> None:
        self.app = app
        self.collection = collection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        fields: dict[str, object] = {"collection": self.collection}
        token = log_fields.set(fields)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_fields.reset(token)
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            LATENCY.labels(route).observe(seconds)
            access_log.info(
                "%s %s %s", scope["method"], route, status,
                extra={"request_id": request_id, "method": scope["method"], "route": route, "status": status,
                       "duration_ms": round(seconds * 1000, 1), **{k: v for k, v in fields.items() if v is not None}},
            )
