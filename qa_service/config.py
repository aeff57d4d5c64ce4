"""Every knob in one pydantic-settings class (env prefix QA_); the CLI overrides fields by flag."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_PROMPTS = PACKAGE_DIR.parent / "prompts"
DEFAULT_MODEL_CACHE = Path(os.path.expanduser("~/.cache/qa-service"))

def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


UNSAFE_KEYS = {"changeme", "change-me", "secret", "password", "test", "key", "apikey", "api-key", "xxx", "placeholder"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    # store
    data_dir: Path = Path("vectorstore")
    collection: str = Field("news", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,60}[A-Za-z0-9]$")
    chroma_url: str | None = None
    write_batch_size: int = Field(1000, ge=1, le=5000)

    # embedding and chunking
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_batch_size: int = Field(4, ge=1, le=1024, description="int8 onnxruntime on 2 cores: 4 ran ~11% faster than 16 in alternating runs over the corpus chunks")
    embedding_device: str = "cpu"
    embedding_backend: Literal["onnx", "onnx-int8", "torch"] = Field(
        "onnx-int8", description="the model exported once to ONNX, int8 weights (fastest on CPU, same dev retrieval); onnx: fp32"
    )
    embedding_bulk_threshold: int = Field(
        0, ge=0, description="backend onnx: batches of this many texts or more go through torch, for CPUs where torch measures faster; 0: never"
    )
    chunk_size: int = Field(256, ge=16, le=4096, description="chunk size in cl100k tokens")
    chunk_overlap: int = Field(32, ge=0, le=1024, description="overlap in tokens")

    # retrieval
    top_k: int = Field(5, ge=1, le=50)
    max_top_k: int = Field(50, ge=1, le=50)
    hybrid: bool = True
    rrf_k: int = Field(5, ge=1, description="reciprocal rank fusion constant; small k trusts the top ranks (dev: k=5 beat 60)")
    dense_weight: float = Field(1.0, ge=0)
    lexical_weight: float = Field(3.0, ge=0)
    bm25_k1: float = Field(0.9, ge=0, description="BM25 term saturation (Anserini's default)")
    bm25_b: float = Field(0.4, ge=0, le=1, description="BM25 length normalisation (Anserini's default)")
    candidates: int = Field(30, ge=1, le=500, description="candidates per retriever before fusion")
    min_similarity: float = Field(0.1, ge=-1, le=1, description="below this top cosine the LLM is not called: refuse")
    strict_grounding: bool = Field(True, description="refuse answers whose words or question names the passages lack")
    dedup_threshold: float = Field(0.95, ge=0, le=1, description="cosine above which two chunks are duplicates")

    # generation
    llm_backend: Literal["local", "openai"] = "local"
    llm_model: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    llm_context: int = Field(2048, ge=512)
    llm_threads: int = Field(0, ge=0, description="0 = all cores")
    llm_slots: int = Field(1, ge=1, le=8, description="local engine slots: each keeps its own prompt prefix cached (answer, condense)")
    llm_max_tokens: int = Field(96, ge=8, le=2048)
    llm_timeout_s: float = Field(120.0, gt=0)
    llm_retries: int = Field(1, ge=0, le=5)
    context_tokens: int = Field(120, ge=64, description="token budget of the passages (with their labels) shown to the LLM")
    model_cache_dir: Path = DEFAULT_MODEL_CACHE
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str = "default"
    prompts_dir: Path = DEFAULT_PROMPTS

    # API limits and auth
    api_keys: str = ""
    require_key_for_reads: bool = False
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_question_chars: int = Field(1000, ge=10, le=1000)
    max_documents_per_request: int = Field(1000, ge=1)
    max_document_chars: int = Field(2_000_000, ge=100)
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; '*' is refused")
    rate_limit_per_minute: int = Field(600, ge=0, description="requests per minute per API key (or client address); 0 = off")
    rate_limit_burst: int = Field(60, ge=1, description="requests a caller may make at once before the per-minute rate applies")
    max_concurrent_generations: int = Field(4, ge=1, description="asks/chats generating or queued for the LLM; more get 503")
    max_inflight_requests: int = Field(256, ge=1, description="requests in progress at once; more get 503")

    @field_validator("chroma_url", "openai_base_url", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        if self.top_k > self.max_top_k:
            raise ValueError("top_k must not exceed max_top_k")
        if self.llm_backend == "openai" and not self.openai_base_url:
            raise ValueError("QA_LLM_BACKEND=openai needs QA_OPENAI_BASE_URL")
        for key in self.api_key_list:
            if key.lower() in UNSAFE_KEYS or len(key) < 16:
                raise ValueError("QA_API_KEYS holds a placeholder or a key shorter than 16 characters; refusing to start")
        if "*" in self.cors_origin_list:
            raise ValueError("QA_CORS_ORIGINS='*' would let any site call this API; list the origins explicitly")
        if self.require_key_for_reads and not self.api_key_list:
            raise ValueError("QA_REQUIRE_KEY_FOR_READS needs QA_API_KEYS")
        return self

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def threads(self) -> int:
        return self.llm_threads or usable_cores()
