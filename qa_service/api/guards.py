"""Who may call, how often, and how many at once: API keys, a per-caller token bucket, generation slots."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter, Gauge

from qa_service.config import Settings
from qa_service.errors import Busy, RateLimited, Unauthorized

Scope = Literal["read", "write"]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of QA_API_KEYS")
bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <one of QA_API_KEYS>")


class TokenBucket:
    """Per-caller buckets; the least recently seen callers are forgotten beyond max_callers."""

    def __init__(self, per_minute: int, burst: int, max_callers: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[caller] = (tokens, now)
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
            return wait


class Slots:
    """A non-blocking semaphore: a caller over the limit is told to come back, not queued without bound."""

    def __init__(self, limit: int, what: str, *, depth: Gauge | None = None, rejected: Counter | None = None) -> None:
        self._sem = threading.BoundedSemaphore(limit)
        self.limit = limit
        self.what = what
        self.depth = depth  # metrics: slots in use, and refusals
        self.rejected = rejected

    def acquire(self) -> Callable[[], None]:
        if not self._sem.acquire(blocking=False):
            if self.rejected is not None:
                self.rejected.inc()
            raise Busy(f"{self.limit} {self.what} already in progress; retry shortly", headers={"Retry-After": "2"})
        if self.depth is not None:
            self.depth.inc()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._sem.release()
                if self.depth is not None:
                    self.depth.dec()

        return release

    @contextmanager
    def hold(self) -> Iterator[None]:
        release = self.acquire()
        try:
            yield
        finally:
            release()


def given_bytes(presented: str) -> bytes:
    return presented.encode("utf-8", "surrogatepass")


def _match(presented: str, keys: list[bytes]) -> int:
    """The index of the key presented, or -1."""
    given = given_bytes(presented)
    found = -1
    for i, key in enumerate(keys):  # compare against every key so the time does not say which one (or whether any) matched
        if hmac.compare_digest(given, key):
            found = i
    return found


def make_limiter(settings: Settings) -> TokenBucket | None:
    return TokenBucket(settings.rate_limit_per_minute, settings.rate_limit_burst) if settings.rate_limit_per_minute else None


def make_guard(settings: Settings, scope: Scope, limiter: TokenBucket | None) -> Callable[..., Awaitable[str]]:
    """A dependency that authenticates (when this scope needs a key) and rate-limits; returns the caller id."""
    key_scopes = settings.api_key_scopes
    scopes = list(key_scopes.values())
    keys = [k.encode() for k in key_scopes]
    needs_key = bool(keys) and (scope == "write" or settings.require_key_for_reads)

    def caller_of(request: Request, presented: str | None) -> str:
        """The caller's id; request.state.collections says which collections it may use (None: all)."""
        request.state.collections = None
        found = _match(presented, keys) if presented and keys else -1
        if found >= 0:
            request.state.collections = scopes[found]
            return "key:" + hashlib.sha256(given_bytes(presented or "")).hexdigest()[:12]
        if presented and any(s is not None for s in scopes):
            # a wrong key must not fall back to the open access of a server whose keys are scoped
            raise Unauthorized("unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if needs_key:
            raise Unauthorized(
                "this endpoint needs an API key: send X-API-Key or Authorization: Bearer", headers={"WWW-Authenticate": "Bearer"}
            )
        return "ip:" + (request.client.host if request.client else "unknown")

    def limit(caller: str) -> str:
        if limiter is not None:
            wait = limiter.take(caller)
            if wait > 0:
                raise RateLimited(f"rate limit of {settings.rate_limit_per_minute}/min exceeded", headers={"Retry-After": str(math.ceil(wait))})
        return caller

    async def open_(request: Request) -> str:
        return limit(caller_of(request, presented_key(request)))

    if not needs_key:
        return open_

    async def secured(
        request: Request,
        _x_api_key: Annotated[str | None, Security(api_key_header)],
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> str:
        """The same check; the Security parameters declare the schemes in the OpenAPI document where they apply."""
        return await open_(request)

    return secured


def presented_key(request: Request) -> str | None:
    """The key from X-API-Key, else from Authorization: Bearer (the header parsing APIKeyHeader and HTTPBearer do)."""
    auth = request.headers.get("authorization", "")
    return request.headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else None)

