"""A blocking stream of StreamEvents -> a Server-Sent Events response (token, retry, done, error events)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator

from sse_starlette.sse import EventSourceResponse

from qa_service.errors import QAError
from qa_service.service import StreamEvent

log = logging.getLogger(__name__)
PING_S = 15


def _error(code: str, message: str) -> dict[str, str]:
    return {"event": "error", "data": json.dumps({"error": {"code": code, "message": message}})}


def _encode(ev: StreamEvent) -> dict[str, str]:
    if ev.event == "token":
        return {"event": "token", "data": json.dumps({"text": ev.data})}
    if ev.event == "retry":
        return {"event": "retry", "data": json.dumps({"reason": ev.data})}
    return {"event": "done", "data": ev.data.model_dump_json()}


async def _events(first: StreamEvent | None, iterator: Iterator[StreamEvent]) -> AsyncIterator[dict[str, str]]:
    """Each next event is computed in a worker thread, so a slow model never blocks the event loop."""
    if first is not None:
        yield _encode(first)
    loop = asyncio.get_running_loop()
    sentinel = StreamEvent("end", None)
    context = contextvars.copy_context()  # the request's (its log line's timings), as asyncio.to_thread would pass on

    def step() -> StreamEvent:
        return next(iterator, sentinel)

    while True:
        try:
            ev = await loop.run_in_executor(None, context.run, step)
        except QAError as exc:
            yield _error(exc.code, exc.message)
            return
        except Exception:
            log.exception("stream failed")
            yield _error("internal_error", "internal error")
            return
        if ev is sentinel:
            return
        yield _encode(ev)


def sse_response(events: Iterator[StreamEvent], release: Callable[[], None]) -> EventSourceResponse:
    """The first event is computed before the response starts, so validation errors still get a status code.
    `release` frees the caller's generation slot when the stream ends, however it ends."""
    iterator = iter(events)
    try:
        first = next(iterator, None)
    except BaseException:
        release()
        raise

    async def stream() -> AsyncIterator[dict[str, str]]:
        try:
            async for item in _events(first, iterator):
                yield item
        finally:
            release()

    return EventSourceResponse(stream(), ping=PING_S)
