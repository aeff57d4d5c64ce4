"""Any LLM protocol backend as a LangChain chat model, so the answer chain is plain LCEL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from qa_service.llm.base import Message, StreamingLLM

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def to_messages(messages: list[BaseMessage]) -> list[Message]:
    return [Message(role=_ROLES.get(m.type, "user"), content=str(m.content)) for m in messages]


class ProtocolChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: StreamingLLM
    max_tokens: int = 96

    @property
    def _llm_type(self) -> str:
        return f"qa-service:{self.backend.name}"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
    ) -> ChatResult:
        text = self.backend.complete(to_messages(messages), max_tokens=kwargs.get("max_tokens", self.max_tokens), stop=stop)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for delta in self.backend.stream(to_messages(messages), max_tokens=kwargs.get("max_tokens", self.max_tokens), stop=stop):
            logprob = getattr(delta, "logprob", None)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=str(delta), response_metadata={} if logprob is None else {"logprobs": [logprob]}))
            if run_manager:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk
