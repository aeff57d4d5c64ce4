"""Fetching on a user's behalf, safely: the only code in the service that opens a connection to a URL a caller named.

Server-side request forgery is stopped where the socket is made, not before: `GuardedBackend.connect_tcp` resolves
the host once, keeps only public addresses (unless private ones are allowed) and connects to the address it checked,
so a redirect, a second connection or a DNS answer that changes between check and connect (rebinding) meets the
same rule. `check_url` runs the same rule early so a bad URL is refused before anything is stored.

Every response is read as a stream under a byte cap and a whole-request deadline (a slow server dribbling bytes
inside the read timeout still ends), redirects are followed by hand so each hop is checked and counted, robots.txt
is honoured per host, each host gets a delay between requests, and transient failures are retried with back-off.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import urllib.robotparser
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from qa_service.config import Settings
from qa_service.errors import BadRequest

Resolver = Callable[[str, int], list[str]]

SCHEMES = {"http", "https"}
REDIRECTS = {301, 302, 303, 307, 308}
RETRY_STATUSES = {429, 500, 502, 503, 504}
ROBOTS_TTL_S = 24 * 3600
# not private by Python's reckoning but never a news site: cloud metadata services and carrier-grade NAT
EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "fd00:ec2::/32")]


class Blocked(BadRequest):  # type: ignore[misc, valid-type]
    """A URL the fetcher will not visit: a scheme other than http(s), or a host that is (or resolves to) a private address."""

    code = "url_not_allowed"


class FetchError(Exception):
    """One fetch failed: a status, a timeout, a limit, a content type. The message is shown to the user as is."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    return not any(ip in net for net in EXTRA_BLOCKED)


@dataclass
class Guard:
    """The address rule: public addresses only, unless private ones are allowed (tests, intranets)."""

    allow_private: bool = False
    resolver: Resolver = system_resolver

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` that may be connected to; Blocked when there are none."""
        host = host.strip("[]")
        try:
            found = [str(ipaddress.ip_address(host))]
        except ValueError:
            found = self.resolver(host, port)
        allowed = found if self.allow_private else [a for a in found if is_public(a)]
        if not allowed:
            raise Blocked(f"{host} resolves to a private or reserved address ({', '.join(found)}); set QA_FETCH_ALLOW_PRIVATE=true to allow it")
        return allowed


def check_url(url: str, guard: Guard) -> str:
    """The URL if it may be fetched (http or https, a host, allowed addresses); Blocked otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in SCHEMES:
        raise Blocked(f"only http and https URLs can be fetched, not {parts.scheme or 'a URL without a scheme'}")
    if not parts.hostname:
        raise Blocked("the URL has no host")
    if parts.username or parts.password:
        raise Blocked("URLs with credentials are not fetched")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise Blocked("the URL has an invalid port") from None
    try:
        guard.addresses(parts.hostname, port)
    except FetchError as exc:
        raise Blocked(str(exc)) from None
    return url.strip()


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the guard allows: the check and the connect are one step."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.guard.addresses(host, port)
        except (Blocked, FetchError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


def guarded_transport(guard: Guard) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False)
    # the pool is rebuilt around the guarded backend; everything else is httpx's default transport
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=20,
        max_keepalive_connections=10,
        network_backend=GuardedBackend(guard),
    )
    return transport


@dataclass
class Response:
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None  # of a redirect

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass
class _Host:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_at: float = 0.0
    robots: urllib.robotparser.RobotFileParser | None = None
    robots_until: float = 0.0


class Fetcher:
    """One fetcher per service: a pooled client, the per-host state (delay, robots.txt) and the limits from settings."""

    def __init__(self, settings: Settings, *, guard: Guard | None = None) -> None:
        self.settings = settings
        self.guard = guard or Guard(allow_private=settings.fetch_allow_private)
        self.client = httpx.Client(
            transport=guarded_transport(self.guard),
            timeout=httpx.Timeout(settings.fetch_read_timeout_s, connect=settings.fetch_connect_timeout_s),
            headers={"User-Agent": settings.fetch_user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,
        )
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def _host(self, url: str) -> _Host:
        key = urlsplit(url).netloc.lower()
        with self._hosts_lock:
            return self._hosts.setdefault(key, _Host())

    def _wait_turn(self, url: str, delay: float) -> None:
        host = self._host(url)
        with host.lock:
            now = time.monotonic()
            if host.next_at > now:
                time.sleep(host.next_at - now)
            host.next_at = time.monotonic() + delay

    def allowed_by_robots(self, url: str) -> bool:
        """robots.txt of the URL's host, read again after a day; a missing or unreadable one allows everything."""
        if not self.settings.fetch_respect_robots:
            return True
        host = self._host(url)
        if host.robots is None or time.monotonic() > host.robots_until:
            parts = urlsplit(url)
            parser = urllib.robotparser.RobotFileParser()
            try:
                got = self._get(f"{parts.scheme}://{parts.netloc}/robots.txt", {}, max_bytes=512 * 1024, robots=False)
                if got.status == 200:
                    parser.parse(got.body.decode("utf-8", "replace").splitlines())
                else:  # 4xx: no rules; 5xx: the host is in trouble, the fetch itself will say so
                    parser.parse([])
            except FetchError:
                parser.parse([])
            host.robots, host.robots_until = parser, time.monotonic() + ROBOTS_TTL_S
        return host.robots.can_fetch(self.settings.fetch_user_agent, url)

    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> Response:
        """GET with the validators of the last fetch (a 304 comes back as a Response with `not_modified`)."""
        check_url(url, self.guard)
        if not self.allowed_by_robots(url):
            raise FetchError(f"robots.txt of {urlsplit(url).netloc} disallows {url}")
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return self._get(url, headers, max_bytes=self.settings.fetch_max_bytes, robots=True)

    def _get(self, url: str, headers: dict[str, str], *, max_bytes: int, robots: bool) -> Response:
        attempts = self.settings.fetch_retries + 1
        for attempt in range(attempts):
            try:
                got = self._follow(url, headers, max_bytes=max_bytes, robots=robots)
            except FetchError as exc:
                if attempt + 1 < attempts and isinstance(exc.__cause__, httpx.TransportError):
                    time.sleep(self.settings.fetch_backoff_s * 2**attempt)
                    continue
                raise
            if got.status in RETRY_STATUSES and attempt + 1 < attempts:
                time.sleep(self.settings.fetch_backoff_s * 2**attempt)
                continue
            return got
        raise AssertionError("unreachable")

    def _follow(self, url: str, headers: dict[str, str], *, max_bytes: int, robots: bool) -> Response:
        seen: list[str] = []
        deadline = time.monotonic() + self.settings.fetch_total_timeout_s
        while True:
            seen.append(url)
            self._wait_turn(url, self.settings.fetch_host_delay_s)
            got = self._once(url, headers, max_bytes=max_bytes, deadline=deadline)
            if got.location is None:
                return got
            nxt = urljoin(url, got.location)
            if nxt in seen:
                raise FetchError(f"redirect loop at {nxt}")
            if len(seen) > self.settings.fetch_max_redirects:
                raise FetchError(f"more than {self.settings.fetch_max_redirects} redirects from {seen[0]}")
            if urlsplit(nxt).scheme.lower() not in SCHEMES:
                raise Blocked(f"redirect to a non-http(s) URL: {nxt}")
            # the target's address is checked where its socket is made (GuardedBackend)
            if robots and not self.allowed_by_robots(nxt):
                raise FetchError(f"robots.txt of {urlsplit(nxt).netloc} disallows {nxt}")
            url = nxt

    def _once(self, url: str, headers: dict[str, str], *, max_bytes: int, deadline: float) -> Response:
        try:
            with self.client.stream("GET", url, headers=headers) as resp:
                if resp.status_code in REDIRECTS:
                    location = resp.headers.get("location")
                    if not location:
                        raise FetchError(f"HTTP {resp.status_code} without a Location from {url}")
                    return Response(url, resp.status_code, "", b"", location=location)
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(f"{url} is {int(declared)} bytes, over the {max_bytes} byte limit (QA_FETCH_MAX_BYTES)")
                body = bytearray()
                for piece in resp.iter_bytes():
                    body.extend(piece)
                    if len(body) > max_bytes:
                        raise FetchError(f"{url} sent more than {max_bytes} bytes (QA_FETCH_MAX_BYTES)")
                    if time.monotonic() > deadline:
                        raise FetchError(f"{url} took over {self.settings.fetch_total_timeout_s:.0f} s (QA_FETCH_TOTAL_TIMEOUT_S)")
                return Response(
                    url=str(resp.url),
                    status=resp.status_code,
                    content_type=resp.headers.get("content-type", "").split(";")[0].strip().lower(),
                    body=bytes(body),
                    etag=resp.headers.get("etag"),
                    last_modified=resp.headers.get("last-modified"),
                )
        except httpx.TimeoutException as exc:
            raise FetchError(f"{url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            blocked = _blocked_in(exc)
            if blocked is not None:
                raise blocked from None
            raise FetchError(f"{url}: {exc or type(exc).__name__}") from exc
        except httpx.DecodingError as exc:
            raise FetchError(f"{url}: undecodable body ({exc})") from exc


def _blocked_in(exc: BaseException) -> Blocked | None:
    """The guard's refusal behind a transport error (httpx wraps httpcore's error, which wraps the guard's)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, Blocked):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
