"""Any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp server), streamed over SSE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from qa_service.errors import BackendTimeout, BackendUnavailable
from qa_service.llm.base import Message, StreamingLLM


class OpenAICompatLLM(StreamingLLM):
    def __init__(
        self, base_url: str, *, model: str, api_key: str | None = None, timeout_s: float = 60.0, retries: int = 1, context: int = 4096
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.context = context
        self.timeout_s = timeout_s
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        )

    def close(self) -> None:
        self._client.close()

    def stream(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> Iterator[str]:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
        }
        if stop:
            body["stop"] = stop
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            yielded = False
            try:
                with self._client.stream("POST", "/chat/completions", json=body) as resp:
                    if resp.status_code >= 500 or resp.status_code == 429:
                        raise _Retryable(f"LLM server answered {resp.status_code}")
                    if resp.status_code >= 400:
                        resp.read()
                        raise BackendUnavailable(f"LLM server rejected the request ({resp.status_code}): {resp.text[:200]}")
                    for delta in _deltas(resp.iter_lines(), deadline, self.timeout_s):
                        yielded = True
                        yield delta
                    return
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, _Retryable) as exc:
                backoff = min(0.5 * (attempt + 1), 2.0)
                if yielded or attempt >= self.retries or time.monotonic() + backoff > deadline:
                    raise BackendUnavailable(f"LLM server unavailable at {self.base_url}: {exc}") from None
                attempt += 1
                time.sleep(backoff)
            except httpx.TimeoutException:
                raise BackendTimeout(f"LLM server did not answer within {self.timeout_s:.0f} s") from None


class _Retryable(Exception):
    pass


def _deltas(lines: Iterator[str], deadline: float, timeout_s: float) -> Iterator[str]:
    saw_data = False
    for line in lines:
        if time.monotonic() > deadline:
            raise BackendTimeout(f"LLM answer took longer than {timeout_s:.0f} s")
        if not line or line.startswith(":"):
            continue
        if not line.startswith("data:"):
            raise BackendUnavailable(f"malformed stream from LLM server: {line[:80]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            obj = json.loads(data)
            choices = obj["choices"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BackendUnavailable(f"malformed chunk from LLM server: {data[:80]!r}") from None
        saw_data = True
        for choice in choices:
            delta = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
            if delta:
                yield delta
    if not saw_data:
        raise BackendUnavailable("LLM server closed the stream without an answer")
