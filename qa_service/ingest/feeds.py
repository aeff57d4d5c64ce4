"""What a fetched URL holds: a feed (RSS 0.9x/1.0/2.0, Atom) of items, a sitemap (or an index of sitemaps) of page
URLs, or one article page. Feeds go through feedparser, sitemaps through lxml with entities and network off, pages
through trafilatura (loaders.load_html). Every item is named by its canonical URL, so an article reached through
two feeds, or with tracking parameters, is one document.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urldefrag, urljoin

from qa_service.store.base import utc_stamp

Kind = Literal["feed", "sitemap", "page"]
FULL_TEXT_CHARS = 400  # a feed entry with this much text is the article itself; a shorter one is a teaser, so its page is fetched

_FEED_ROOT = re.compile(rb"<(?:[a-z0-9]+:)?(rss|feed|rdf)\b", re.I)
_SITEMAP_ROOT = re.compile(rb"<(?:[a-z0-9]+:)?(urlset|sitemapindex)\b", re.I)
_HTML_ROOT = re.compile(rb"<(!doctype\s+html|html)\b", re.I)
XML_TYPES = {"application/xml", "text/xml", "application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/x-rss+xml"}
HTML_TYPES = {"text/html", "application/xhtml+xml"}
ACCEPTED: dict[str, set[str]] = {"page": HTML_TYPES, "feed": XML_TYPES | HTML_TYPES, "sitemap": XML_TYPES}  # some servers send feeds as text/html


class ParseError(ValueError):
    pass


@dataclass
class Item:
    url: str
    title: str | None = None
    published_at: str | None = None
    author: str | None = None
    text: str | None = None  # the feed's own full text, when it carries one


@dataclass
class Parsed:
    kind: Kind
    items: list[Item] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)  # the children of a sitemap index


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no fragment, no tracking parameters (utm_*, fbclid...), sorted query."""
    import courlan

    try:
        normal = courlan.normalize_url(url.strip())
    except ValueError:
        normal = url.strip()
    return urldefrag(normal)[0]


def detect_kind(content_type: str, body: bytes) -> Kind | None:
    """The kind from the document's root element, else from the content type; None for anything else (an image, a PDF)."""
    head = body[:4096]
    if _SITEMAP_ROOT.search(head):
        return "sitemap"
    if _FEED_ROOT.search(head) and not _HTML_ROOT.search(head[:512]):
        return "feed"
    if content_type in HTML_TYPES or _HTML_ROOT.search(head):
        return "page"
    return None


def check_content_type(content_type: str, kind: Kind) -> None:
    if content_type and content_type not in ACCEPTED[kind] and not content_type.endswith("+xml"):
        raise ParseError(f"a {kind} was expected but the server sent {content_type}")


def _iso(parsed: Any) -> str | None:
    return utc_stamp(calendar.timegm(parsed)) if parsed else None


def html_to_text(fragment: str) -> str:
    """A feed entry's HTML as paragraphs of plain text."""
    import lxml.html

    try:
        root = lxml.html.fromstring(fragment)
    except Exception:  # lxml raises several kinds (ParserError, XMLSyntaxError) for empty or broken fragments
        return fragment.strip()
    blocks = [el.text_content().strip() for el in root.iter("p", "h1", "h2", "h3", "li", "blockquote")]
    text = "\n\n".join(b for b in blocks if b) or root.text_content()
    return re.sub(r"[ \t]+", " ", text).strip()


def parse_feed(body: bytes, base_url: str, *, max_items: int) -> Parsed:
    import feedparser

    feed = feedparser.parse(body, sanitize_html=True, resolve_relative_uris=True, response_headers={"content-location": base_url})
    if not feed.entries and (feed.bozo or not feed.version):
        reason = getattr(feed, "bozo_exception", None)
        raise ParseError(f"not a readable feed: {reason or 'no entries'}")
    items: list[Item] = []
    for entry in feed.entries[:max_items]:
        link = entry.get("link") or next((lk.get("href") for lk in entry.get("links", []) if lk.get("href")), None)
        if not link:
            continue
        content = " ".join(c.get("value", "") for c in entry.get("content", []))
        text = html_to_text(content) if content else ""
        if len(text) < FULL_TEXT_CHARS:
            summary = html_to_text(entry.get("summary", "") or "")
            text = summary if len(summary) >= FULL_TEXT_CHARS else ""
        items.append(
            Item(
                url=canonical_url(urljoin(base_url, link)),
                title=(entry.get("title") or "").strip() or None,
                published_at=_iso(entry.get("published_parsed") or entry.get("updated_parsed")),
                author=(entry.get("author") or "").strip() or None,
                text=text or None,
            )
        )
    if not items and feed.bozo:
        raise ParseError(f"not a readable feed: {getattr(feed, 'bozo_exception', None) or 'no entry has a link'}")
    return Parsed("feed", items)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _date(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    try:
        if "T" not in value:
            return dt.date.fromisoformat(value[:10]).isoformat()
        return utc_stamp(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def parse_sitemap(body: bytes, base_url: str, *, max_items: int) -> Parsed:
    """A urlset's page URLs (with lastmod, or the Google News publication date and title), or an index's sitemaps."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"malformed sitemap XML: {exc}") from None
    kind = _local(root.tag)
    if kind not in {"urlset", "sitemapindex"}:
        raise ParseError(f"not a sitemap (root element <{kind}>)")
    out = Parsed("sitemap")
    for node in root:
        fields: dict[str, str] = {}
        for el in node.iter():
            name = _local(el.tag)
            if name and el.text and el.text.strip() and name not in fields:
                fields[name] = el.text.strip()
        loc = fields.get("loc")
        if not loc:
            continue
        url = canonical_url(urljoin(base_url, loc))
        if kind == "sitemapindex":
            out.sitemaps.append(url)
        else:
            out.items.append(Item(url=url, title=fields.get("title"), published_at=_date(fields.get("publication_date") or fields.get("lastmod"))))
        if len(out.items) + len(out.sitemaps) >= max_items:
            break
    return out


def count_entries(body: bytes) -> int:
    """How many entries a feed or sitemap holds, to say so when only the first QA_FETCH_MAX_ITEMS are read."""
    return len(re.findall(rb"<(?:[a-z0-9]+:)?(?:item|entry|url|sitemap)\b[\s>]", body, re.I))
