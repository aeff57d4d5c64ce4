"""The LLM backend base. A backend implements `stream`; `complete` is derived from it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict


class Message(TypedDict):
    role: str
    content: str


class StreamingLLM:
    """Subclass and implement `stream` (and `close` when the backend holds resources)."""

    name = "llm"
    context = 4096

    def stream(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> Iterator[str]:
        raise NotImplementedError

    def complete(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens, stop=stop))

    def close(self) -> None:
        return None
