"""The LLM backend base. A backend implements `stream`; `complete` is derived from it.

A backend that knows how sure the model was of each token may yield `Piece`s: text that also carries its lowest token
log-probability. Everything downstream still reads plain text; the answer's confidence reads the log-probabilities
(`compose.answer_logprob`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict


class Message(TypedDict):
    role: str
    content: str


class Piece(str):
    """A streamed piece of the reply and the lowest log-probability of its tokens (None when not reported)."""

    logprob: float | None

    def __new__(cls, text: str, logprob: float | None = None) -> Piece:
        piece = super().__new__(cls, text)
        piece.logprob = logprob
        return piece


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
