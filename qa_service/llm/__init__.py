"""LLM backends, chosen by settings."""

from __future__ import annotations

from qa_service.config import Settings
from qa_service.llm.base import LLM, Message, StreamingLLM


def make_llm(settings: Settings) -> StreamingLLM:
    if settings.llm_backend == "openai":
        from qa_service.llm.openai_compat import OpenAICompatLLM

        assert settings.openai_base_url is not None
        return OpenAICompatLLM(
            settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            timeout_s=settings.llm_timeout_s,
            retries=settings.llm_retries,
            context=settings.llm_context,
        )
    from qa_service.llm.local import LocalLLM

    return LocalLLM(
        settings.llm_model,
        cache_dir=settings.model_cache_dir,
        context=settings.llm_context,
        threads=settings.threads,
        timeout_s=settings.llm_timeout_s,
        slots=settings.llm_slots,
    )


__all__ = ["LLM", "Message", "StreamingLLM", "make_llm"]
