"""In-process GGUF inference with xllamacpp; one slot, so the stable instruction prefix stays in the KV cache. Each
streamed piece carries its tokens' log-probability, which the answer's confidence reads."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qa_service.errors import BackendTimeout, BackendUnavailable
from qa_service.llm.base import Message, Piece, StreamingLLM
from qa_service.models import resolve_gguf

_DONE = object()


def make_server(model_path: Path, *, n_ctx: int, threads: int, slots: int = 1, host: str | None = None, port: int | None = None) -> Any:
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = str(model_path)
    p.n_ctx = n_ctx
    p.n_parallel = slots
    p.n_batch = 512
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.cache_prompt = True
    # the slot's own KV cache already keeps the shared instruction prefix; llama-server's extra host-RAM prompt
    # cache (8 GB by default) only grows the process with copies of past prompts
    p.cache_ram_mib = 0
    p.warmup = False
    p.verbosity = -1
    if host is not None:
        p.hostnames = [host]
    if port is not None:
        p.port = port
    return xlc.Server(p)


class LocalLLM(StreamingLLM):
    def __init__(self, model: str, *, cache_dir: Path, context: int = 4096, threads: int = 2, timeout_s: float = 120.0, slots: int = 1) -> None:
        self.path = resolve_gguf(model, cache_dir)
        self.name = model
        self.context = context // slots  # the engine splits n_ctx between its slots
        self.timeout_s = timeout_s
        # more than one slot keeps more than one prompt prefix cached (answer and condense prompts differ)
        self._server = make_server(self.path, n_ctx=context, threads=threads, slots=slots)
        self._lock = threading.Lock()

    def stream(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> Iterator[str]:
        q: queue.Queue[Any] = queue.Queue()
        request: dict[str, Any] = {
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "top_k": 1,
            "stream": True,
            "cache_prompt": True,
            "logprobs": True,
        }
        if stop:
            request["stop"] = stop

        def run() -> None:
            try:
                with self._lock:
                    result = self._server.handle_chat_completions(request, q.put)
                if isinstance(result, dict) and "error" in result:
                    q.put(BackendUnavailable(f"local LLM error: {result['error']}"))
            except Exception as exc:  # surfaced to the caller as a 503
                q.put(BackendUnavailable(f"local LLM failed: {exc}"))
            finally:
                q.put(_DONE)

        threading.Thread(target=run, daemon=True, name="local-llm").start()
        while True:
            try:
                item = q.get(timeout=self.timeout_s)
            except queue.Empty:
                raise BackendTimeout(f"local LLM produced nothing for {self.timeout_s:.0f} s") from None
            if item is _DONE:
                return
            yield from _deltas(item)


def _deltas(item: Any) -> Iterator[str]:
    """The text pieces of one streamed engine event, with their lowest token log-probability; an error event or
    exception is raised."""
    if isinstance(item, Exception):
        raise item
    if isinstance(item, dict):
        if "error" in item:
            raise BackendUnavailable(f"local LLM error: {item['error']}")
        for choice in item.get("choices", []):
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                tokens = (choice.get("logprobs") or {}).get("content") or []
                logprobs = [t["logprob"] for t in tokens if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)]
                yield Piece(delta, min(logprobs)) if logprobs else delta
