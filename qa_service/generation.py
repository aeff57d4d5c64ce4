"""Passages -> prompt (from prompts/) -> LLM -> raw answer text, as an LCEL chain, within a token budget; and the
chat step that rewrites a follow-up into a standalone question."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from qa_service.errors import ConfigError, PayloadTooLarge
from qa_service.ingest.chunking import count_tokens
from qa_service.llm.base import Piece, StreamingLLM
from qa_service.llm.langchain_adapter import ProtocolChatModel
from qa_service.passages import Passage, format_passages
from qa_service.timeframe import TimeFrame


@dataclass
class Prompts:
    system: str
    answer: str
    condense: str
    examples: list[tuple[str, str]]  # (role, text) few-shot turns: part of the stable, cached prefix

    @classmethod
    def load(cls, folder: Path) -> Prompts:
        try:
            system, answer, condense, examples = (
                Path(folder, f"{name}.md").read_text(encoding="utf-8").strip() for name in ("system", "answer", "condense", "examples")
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"prompt template missing: {exc.filename}") from None
        turns = [
            ("human" if part.startswith("user") else "ai", part.split("\n", 1)[1].strip())
            for part in re.split(r"^### ", examples, flags=re.MULTILINE)
            if part.strip() and part.split("\n", 1)[0].strip() in {"user", "assistant"}
        ]
        return cls(system, answer, condense, turns)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


class Generator:
    """Builds the LCEL answer chain: prompt template | chat model | string parser."""

    def __init__(self, llm: StreamingLLM, prompts: Prompts, *, max_tokens: int, context_tokens: int, context: int) -> None:
        self.llm = llm
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.context = context
        self.model = ProtocolChatModel(backend=llm, max_tokens=max_tokens)
        prefix = [("system", _escape(prompts.system))] + [(role, _escape(text)) for role, text in prompts.examples]
        self.system_tokens = sum(count_tokens(text) + 4 for _, text in prefix)
        template = ChatPromptTemplate.from_messages([*prefix, ("human", prompts.answer)])
        self.chain: Runnable[dict[str, str], BaseMessage] = template | self.model  # messages, not text: each keeps its log-probability
        condense = ChatPromptTemplate.from_messages([("human", prompts.condense)])
        self.condense_chain: Runnable[dict[str, str], str] = condense | self.model.bind(max_tokens=48) | StrOutputParser()

    def passage_budget(self, question: str, wanted: int | None = None) -> int:
        """Tokens left for passages once instructions, question and answer are reserved, up to `wanted` (by default
        QA_CONTEXT_TOKENS)."""
        q = count_tokens(question)
        spare = self.context - self.system_tokens - q - self.max_tokens - 96
        if spare < 64:
            raise PayloadTooLarge(f"question is {q} tokens; it leaves no room for passages in a {self.context}-token context")
        return min(wanted or self.context_tokens, spare)

    def stream(self, question: str, passages: list[Passage], tf: TimeFrame | None = None, pieces: list[Piece] | None = None) -> Iterator[str]:
        """The answer's tokens. A time-relative question ("this week") is sent with the day it is asked, so the
        model can match it against the passages' dates. `pieces` collects the reply as `Piece`s, with the
        log-probabilities the backend reports."""
        asked = f"{question} (asked on {tf.as_of.isoformat()})" if tf is not None and tf.relative else question
        for chunk in self.chain.stream({"passages": format_passages(passages), "question": asked}):
            text = chunk.content if isinstance(chunk.content, str) else ""
            if not text:
                continue
            if pieces is not None:
                logprobs = chunk.response_metadata.get("logprobs") or [None]  # a list: LangChain merges chunk metadata
                pieces.append(Piece(text, logprobs[0]))
            yield text

    def warmup(self) -> None:
        """Evaluate the stable instruction prefix once, so the engine's prompt cache holds it before any question."""
        self.model.invoke(self.chain.first.invoke({"passages": "[1] -\n-", "question": "-"}), max_tokens=1)  # type: ignore[attr-defined]

    def condense(self, history: str, question: str) -> str:
        return self.condense_chain.invoke({"history": history, "question": question}).strip()


_ANAPHORA = re.compile(
    r"\b(he|she|they|it|its|his|her|hers|him|them|their|theirs|this|that|these|those|there|then|the same|the other|the former|the latter)\b"
    r"|^(and|but|also|so|what about|how about|and what|why|how come)\b|^(when|where|why|how|who)\W*$",
    re.IGNORECASE,
)


def needs_context(question: str) -> bool:
    """Only a follow-up that leans on the history (a pronoun, "and where...?") is rewritten; a standalone question is
    asked as typed: rewriting it cost a model call and, measured, could change its meaning ("Kremlin" became "Russian")."""
    return bool(_ANAPHORA.search(question.strip())) or len(question.split()) <= 2
