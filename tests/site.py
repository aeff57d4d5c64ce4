"""A real HTTP news site on 127.0.0.1 for the fetch tests and the refresh benchmark: pages, feeds, sitemaps and the
misbehaving endpoints a fetcher must survive. The articles are written for these tests (fictional towns and people).
"""

from __future__ import annotations

import datetime as dt
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # answers If-None-Match with 304 when it matches
    last_modified: str | None = None


Handler = Callable[[BaseHTTPRequestHandler], None]


class Site:
    """Routes (path -> Page or a handler function) that tests change while the server runs, and a log of requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Page | Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                site.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = site.routes.get(self.path)
                if route is None:
                    self._send(Page(b"not found", "text/plain", 404))
                elif isinstance(route, Page):
                    self._send(route)
                else:
                    route(self)

            def _send(self, page: Page) -> None:
                if page.etag and self.headers.get("If-None-Match") == page.etag:
                    self.send_response(304)
                    self.send_header("ETag", page.etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = page.body
                gz = "gzip" in (self.headers.get("Accept-Encoding") or "") and len(body) > 200
                if gz:
                    body = gzip.compress(body)
                self.send_response(page.status)
                self.send_header("Content-Type", page.content_type)
                if "Content-Length" not in page.headers:
                    self.send_header("Content-Length", str(len(body)))
                if gz:
                    self.send_header("Content-Encoding", "gzip")
                if page.etag:
                    self.send_header("ETag", page.etag)
                if page.last_modified:
                    self.send_header("Last-Modified", page.last_modified)
                for k, v in page.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]

    @contextmanager
    def running(self) -> Iterator[Site]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def article_html(title: str, paragraphs: list[str], *, published: str | None = None, author: str | None = None, canonical: str | None = None) -> bytes:
    meta = ""
    if published:
        meta += f'<meta property="article:published_time" content="{published}">'
    if author:
        meta += f'<meta name="author" content="{escape(author)}">'
    if canonical:
        meta += f'<link rel="canonical" href="{canonical}">'
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html><head><title>{escape(title)}</title>{meta}</head><body>"
        f"<nav><a href='/'>Home</a> <a href='/world'>World</a></nav>"
        f"<article><h1>{escape(title)}</h1>{body}</article>"
        f"<footer>Copyright The Harbour Gazette</footer></body></html>"
    ).encode()


def rfc822(day: dt.datetime) -> str:
    return format_datetime(day.replace(tzinfo=dt.UTC), usegmt=True)


def rss(items: list[dict[str, str]], *, title: str = "The Harbour Gazette") -> bytes:
    """items: link, title, date (RFC 822), and optional description / content (HTML, put in content:encoded)."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        f"<channel><title>{escape(title)}</title><link>http://example.org/</link><description>news</description>",
    ]
    for it in items:
        out.append("<item>")
        out.append(f"<title>{escape(it['title'])}</title><link>{escape(it['link'])}</link><guid>{escape(it['link'])}</guid>")
        if "date" in it:
            out.append(f"<pubDate>{it['date']}</pubDate>")
        if "author" in it:
            out.append(f"<dc:creator>{escape(it['author'])}</dc:creator>")
        if "description" in it:
            out.append(f"<description>{escape(it['description'])}</description>")
        if "content" in it:
            out.append(f"<content:encoded><![CDATA[{it['content']}]]></content:encoded>")
        out.append("</item>")
    out.append("</channel></rss>")
    return "\n".join(out).encode()


def atom(entries: list[dict[str, str]]) -> bytes:
    """entries: link, title, updated (ISO), author, content (HTML)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>', '<feed xmlns="http://www.w3.org/2005/Atom">',
           "<title>Valley Courier</title><id>urn:valley</id><updated>2026-11-02T08:00:00Z</updated>"]
    for e in entries:
        out.append(
            f"<entry><title>{escape(e['title'])}</title><link href=\"{escape(e['link'])}\"/><id>{escape(e['link'])}</id>"
            f"<updated>{e['updated']}</updated><author><name>{escape(e['author'])}</name></author>"
            f"<content type=\"html\">{escape(e['content'])}</content></entry>"
        )
    out.append("</feed>")
    return "\n".join(out).encode()


def sitemap(urls: list[tuple[str, str | None]]) -> bytes:
    rows = "".join(f"<url><loc>{escape(u)}</loc>{f'<lastmod>{d}</lastmod>' if d else ''}</url>" for u, d in urls)
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{rows}</urlset>'.encode()


def sitemap_index(urls: list[str]) -> bytes:
    rows = "".join(f"<sitemap><loc>{escape(u)}</loc></sitemap>" for u in urls)
    return f'<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{rows}</sitemapindex>'.encode()


def slow(delay: float, chunks: int = 100) -> Handler:
    """A slow-loris response: headers at once, then a byte every `delay` seconds."""

    def handle(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml")
        req.send_header("Content-Length", str(chunks))
        req.end_headers()
        try:
            for _ in range(chunks):
                req.wfile.write(b" ")
                req.wfile.flush()
                time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass

    return handle


def endless(req: BaseHTTPRequestHandler) -> None:
    """A body that never ends (chunked, no length): the stand-in for a 10 GB response."""
    req.send_response(200)
    req.send_header("Content-Type", "text/html")
    req.send_header("Transfer-Encoding", "chunked")
    req.end_headers()
    block = b"<p>" + b"x" * 65536 + b"</p>"
    try:
        for _ in range(160_000):  # ~10 GB if nobody stops reading
            req.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass


def redirect(to: str, status: int = 302) -> Page:
    return Page(b"", "text/plain", status, headers={"Location": to})
