"""LLM backends, chosen by settings."""

from __future__ import annotations

from qa_service.config import Settings
from qa_service.llm.base import Message, StreamingLLM


def make_llm(settings: Settings) -> StreamingLLM:
    s = settings
    if s.llm_backend == "openai":
        from qa_service.llm.openai_compat import OpenAICompatLLM

        assert s.openai_base_url is not None
        return OpenAICompatLLM(
            s.openai_base_url, model=s.openai_model, api_key=s.openai_api_key, timeout_s=s.llm_timeout_s, retries=s.llm_retries, context=s.llm_context
        )
    from qa_service.llm.local import LocalLLM

    return LocalLLM(s.llm_model, cache_dir=s.model_cache_dir, context=s.llm_context, threads=s.threads, timeout_s=s.llm_timeout_s, slots=s.llm_slots)


__all__ = ["Message", "StreamingLLM", "make_llm"]
