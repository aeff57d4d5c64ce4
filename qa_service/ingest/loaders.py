"""Files and request bodies -> Articles. One bad file or line is a per-item error, never a failed batch."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED = {".txt", ".md", ".markdown", ".json", ".jsonl", ".html", ".htm"}
MAX_FILE_BYTES = 50 * 1024 * 1024


@dataclass
class Article:
    title: str
    text: str
    id: str | None = None
    source: str | None = None
    url: str | None = None
    published_at: str | None = None
    author: str | None = None

    @property
    def doc_id(self) -> str:
        if self.id:
            return self.id
        basis = f"url:{self.url}" if self.url else f"text:{self.title}\n{self.text}"
        return "doc_" + hashlib.sha256(basis.encode()).hexdigest()[:16]

    @property
    def content_hash(self) -> str:
        fields = [self.title, self.text, self.source, self.url, self.published_at, self.author]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


@dataclass
class Loaded:
    origin: str
    article: Article | None = None
    error: str | None = None


class LoadError(ValueError):
    pass


def _clean_str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if not isinstance(value, (str, int, float)):
        raise LoadError(f"expected a string, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def first_line_title(text: str) -> str:
    """The first non-empty line; a long first line is a lede, not a headline, so only its opening words."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            if len(line) <= 120:
                return line
            words = line.split()
            return " ".join(words[:12]) + " …"
    return ""


def article_from_mapping(obj: object, *, default_source: str | None = None) -> Article:
    if not isinstance(obj, dict):
        raise LoadError(f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get("text", obj.get("body"))
    if not isinstance(text, str) or not text.strip():
        raise LoadError("article has no 'text' (or 'body')")
    title = _clean_str(obj.get("title")) or first_line_title(text)
    return Article(
        id=_clean_str(obj.get("id")),
        title=title,
        text=text,
        source=_clean_str(obj.get("source")) or default_source,
        url=_clean_str(obj.get("url")),
        published_at=_clean_str(obj.get("published_at")),
        author=_clean_str(obj.get("author")),
    )


def decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError("binary file (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise LoadError("empty file")
    return text


def load_text(text: str, *, stem: str) -> Article:
    """Plain text or Markdown, with optional YAML front matter for the metadata."""
    import frontmatter

    meta: dict[str, Any] = {}
    body = text
    if text.lstrip().startswith("---"):
        try:
            post = frontmatter.loads(text)
            meta, body = dict(post.metadata), post.content
        except Exception as exc:  # YAML errors come in many types
            raise LoadError(f"invalid front matter: {exc}") from None
    if not body.strip():
        raise LoadError("no article text")
    meta.setdefault("id", stem)
    meta["text"] = body
    return article_from_mapping(meta)


def load_html(html: str, *, stem: str) -> Article:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=False, favor_precision=True)
    if not text or not text.strip():
        raise LoadError("HTML holds no article text")
    meta = trafilatura.extract_metadata(html)
    return Article(
        id=stem,
        title=(meta.title if meta and meta.title else first_line_title(text)),
        text=text,
        source=(meta.sitename if meta and meta.sitename else None),
        url=(meta.url if meta and meta.url else None),
        published_at=(meta.date if meta and meta.date else None),
        author=(meta.author if meta and meta.author else None),
    )


def load_bytes(data: bytes, name: str) -> Iterator[Loaded]:
    """Parse one file's bytes by its extension; yields one Loaded per article (or per bad line)."""
    suffix = Path(name).suffix.lower()
    stem = Path(name).stem
    try:
        if suffix not in SUPPORTED:
            raise LoadError(f"unsupported file type {suffix or '(none)'}; expected one of {sorted(SUPPORTED)}")
        if len(data) > MAX_FILE_BYTES:
            raise LoadError(f"file is {len(data)} bytes, over the {MAX_FILE_BYTES} byte limit")
        text = decode(data)
        if suffix in {".txt", ".md", ".markdown"}:
            yield Loaded(name, load_text(text, stem=stem))
        elif suffix in {".html", ".htm"}:
            yield Loaded(name, load_html(text, stem=stem))
        elif suffix == ".json":
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LoadError(f"malformed JSON: {exc}") from None
            items = obj if isinstance(obj, list) else [obj]
            for i, item in enumerate(items):
                origin = f"{name}[{i}]" if isinstance(obj, list) else name
                yield _safe(origin, item)
        else:
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Loaded(f"{name}:{lineno}", error=f"malformed JSON line: {exc}")
                    continue
                yield _safe(f"{name}:{lineno}", item)
    except LoadError as exc:
        yield Loaded(name, error=str(exc))


def _safe(origin: str, item: object) -> Loaded:
    try:
        return Loaded(origin, article_from_mapping(item))
    except LoadError as exc:
        return Loaded(origin, error=str(exc))


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            # inside folders only known article types; a file named on its own is always tried (and reported)
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED)
        else:
            yield path


def load_paths(paths: Iterable[Path]) -> Iterator[Loaded]:
    for path in iter_files(paths):
        if not path.exists():
            yield Loaded(str(path), error="no such file")
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            yield Loaded(str(path), error=f"file is over the {MAX_FILE_BYTES} byte limit")
            continue
        yield from load_bytes(path.read_bytes(), str(path))
