"""Every knob in one pydantic-settings class (env prefix QA_); the CLI overrides fields by flag."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_PROMPTS = PACKAGE_DIR.parent / "prompts"
DEFAULT_READER = PACKAGE_DIR.parent / "models" / "reader"
DEFAULT_ANSWER_CALIBRATION = PACKAGE_DIR.parent / "models" / "answer_calibration.json"
DEFAULT_MODEL_CACHE = Path(os.path.expanduser("~/.cache/qa-service"))


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",  # models come from packages; a hub lookup would only wait for a network that is not there
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",  # the encoder runs its own threads; the tokenizer's would fight them
    "ANONYMIZED_TELEMETRY": "False",  # Chroma's telemetry
}


def offline_environment() -> None:
    """Set the libraries' offline and quiet switches, leaving any the user set alone."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


UNSAFE_KEYS = {"changeme", "change-me", "secret", "password", "test", "key", "apikey", "api-key", "xxx", "placeholder"}


# hard limits: the request schemas state them, settings may only tighten them
MAX_TOP_K = 50
MAX_QUESTION_CHARS = 1000
COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,60}[A-Za-z0-9]$"


class Settings(BaseSettings):
    """Every setting, read from QA_<NAME> environment variables or a .env file; docs/configuration.md lists them."""

    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    # store
    data_dir: Path = Field(Path("vectorstore"), description="directory of the embedded Chroma store, the BM25 index and the writer lock")
    collection: str = Field("news", pattern=COLLECTION_NAME, description="the default collection: requests that name none use it")
    chroma_url: str | None = Field(None, description="a Chroma server (http://host:port) instead of the embedded store")
    write_batch_size: int = Field(1000, ge=1, le=5000, description="records per Chroma write (capped by the server's own maximum)")

    # embedding and chunking
    embedding_model: str = Field("all-MiniLM-L6-v2", description="packaged sentence-transformers model name, or a local model directory")
    embedding_batch_size: int = Field(
        1, ge=1, le=1024, description="texts per encoder call; int8 activations are scaled per batch, so 1 gives a text the same vector in any ingest (as fast on ONNX)"
    )
    embedding_device: str = Field("cpu", description="torch device for the torch backend")
    embedding_backend: Literal["onnx", "onnx-int8", "torch"] = Field(
        "onnx-int8", description="onnx-int8: exported once to ONNX with int8 weights; onnx: fp32 export; torch: sentence-transformers"
    )
    embedding_bulk_threshold: int = Field(
        0, ge=0, description="backend onnx: batches of this many texts or more go through torch (for CPUs where torch is faster); 0: never"
    )
    encoder_change: Literal["reembed", "refuse"] = Field(
        "reembed",
        description="a collection whose vectors another encoder made (QA_EMBEDDING_MODEL or _BACKEND changed since): "
        "embed its chunks again from the stored documents on open (reembed), or refuse to open it (refuse)",
    )
    chunk_size: int = Field(256, ge=16, le=4096, description="chunk size in cl100k tokens")
    chunk_overlap: int = Field(32, ge=0, le=1024, description="overlap between neighbouring chunks, in tokens")

    # retrieval
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="passages per answer or search")
    max_top_k: int = Field(MAX_TOP_K, ge=1, le=MAX_TOP_K, description="the largest top_k a request may ask for")
    hybrid: bool = Field(True, description="fuse BM25 with dense search (off: dense only)")
    rrf_k: int = Field(5, ge=1, description="reciprocal rank fusion constant; a small k trusts the top ranks")
    dense_weight: float = Field(1.0, ge=0, description="weight of the dense ranking in the fusion")
    lexical_weight: float = Field(3.0, ge=0, description="weight of the BM25 ranking in the fusion")
    bm25_k1: float = Field(0.9, ge=0, description="BM25 term saturation (Anserini's default)")
    bm25_b: float = Field(0.4, ge=0, le=1, description="BM25 length normalisation (Anserini's default)")
    candidates: int = Field(30, ge=1, le=500, description="candidates per retriever before fusion")
    time_weight: float = Field(0.5, ge=0, description="weight of the date prior (the question's window, else recency) as a share of a ranking's top vote; 0 = off")
    window_half_life_days: float = Field(14.0, ge=0, description="days outside the question's time window over which the date prior halves")
    recency_half_life_days: float = Field(180.0, ge=0, description="days of age (before the newest candidate) over which the date prior halves when no time is named")
    min_similarity: float = Field(0.1, ge=-1, le=1, description="below this top cosine the LLM is not called: refuse")
    strict_grounding: bool = Field(True, description="refuse answers whose words or question names the passages lack")
    missing_terms: Literal["archive", "passages"] = Field(
        "archive", description="strict grounding refuses a question naming a term no shown passage holds: if the archive never names it (archive), or always (passages)"
    )
    dedup_threshold: float = Field(0.95, ge=0, le=1, description="cosine above which two chunks are duplicates")

    # reading: the trained extractive reader
    reader: bool = Field(False, description="answer through the trained reader: it reranks the candidates, picks the evidence and gives the spans")
    sentence_reader_weight: float = Field(
        0.4, ge=0, description="weight of the reader's belief that a sentence holds the answer when sentences are chosen for the LLM; 0 leaves it out"
    )
    wide_context_tokens: int = Field(
        300, ge=0, description="passage budget when the reader is sure of no sentence of the top chunks (QA_READER_SURE); 0 keeps QA_CONTEXT_TOKENS"
    )
    retry_wide: bool = Field(
        True, description="when the answer over the narrow evidence is refused (declined or not grounded), ask once more over QA_WIDE_CONTEXT_TOKENS of the same chunks"
    )
    reader_sure: float = Field(
        0.4,
        ge=0,
        le=1,
        description="the reader is sure of a sentence whose best span it thinks right with this calibrated probability (its calibration.json; "
        "0.4 is a margin of 4.03 over no-answer for the committed reader); 0: always sure, 1: never",
    )
    reader_model: Path = Field(DEFAULT_READER, description="folder of the exported reader (reader.int8.onnx, tokenizer.json, calibration.json)")
    reader_candidates: int = Field(10, ge=1, le=200, description="retrieved chunks the reader reads and reranks (the extractive mode reads them all)")
    reader_weight: float = Field(0.5, ge=0, description="weight of the reader's ranking against retrieval's (1) in the rerank fusion")
    reader_min_score: float = Field(
        0.0, description="a span must score this much over no-answer (logits) to answer; when no shown passage has one, the answer is a refusal"
    )
    reader_trust: float = Field(0.5, ge=0, le=1, description="reader confidence above which the LLM's refusal gives way to the reader's span")
    answer_calibration: Path | None = Field(
        DEFAULT_ANSWER_CALIBRATION,
        description="logistic fit from the reader's score of the LLM's short answer, its cited sources' staleness and the LLM's lowest word "
        "log-probability (when the backend reports one) to P(answer right), for the default path's `confidence` "
        "(bench/answer_calibration.py makes it); unset: no confidence there",
    )
    answer_mode: Literal["generative", "extractive"] = Field(
        "generative", description="generative: the LLM writes the answer from the reader's evidence; extractive: the reader's span alone"
    )

    # generation
    llm_backend: Literal["local", "openai"] = Field("local", description="local: in-process GGUF engine; openai: an OpenAI-compatible server")
    llm_model: str = Field("qwen2.5-coder-1.5b-instruct-q4_k_m", description="packaged GGUF model name or a .gguf path (local backend)")
    llm_context: int = Field(2048, ge=512, description="context window in tokens")
    llm_threads: int = Field(0, ge=0, description="threads of the local engine; 0: every usable core")
    llm_slots: int = Field(1, ge=1, le=8, description="local engine slots: each keeps its own prompt prefix cached (answer, condense)")
    llm_max_tokens: int = Field(96, ge=8, le=2048, description="longest answer in tokens")
    llm_timeout_s: float = Field(120.0, gt=0, description="seconds an answer may take")
    llm_retries: int = Field(1, ge=0, le=5, description="retries of a failed call to an LLM server, before any token arrived")
    context_tokens: int = Field(120, ge=64, description="token budget of the passages (with their labels) shown to the LLM")
    model_cache_dir: Path = Field(DEFAULT_MODEL_CACHE, description="where packaged models are unpacked and the ONNX exports kept")
    openai_base_url: str | None = Field(None, description="base URL of the OpenAI-compatible server (e.g. http://host:8080/v1)")
    openai_api_key: str | None = Field(None, description="its API key, if it needs one")
    openai_model: str = Field("default", description="the model name sent to that server")
    prompts_dir: Path = Field(DEFAULT_PROMPTS, description="folder of the prompt templates (system, answer, condense, examples)")

    # news sources: fetching feeds, sitemaps and pages
    fetch_allow_private: bool = Field(False, description="let sources fetch loopback, private and link-local addresses (tests, intranets)")
    fetch_user_agent: str = Field("qa-service/0.1 (self-hosted news question answering)", description="User-Agent of every fetch; robots.txt rules are read for it")
    fetch_respect_robots: bool = Field(True, description="honour each host's robots.txt")
    fetch_connect_timeout_s: float = Field(5.0, gt=0, description="seconds to connect")
    fetch_read_timeout_s: float = Field(10.0, gt=0, description="seconds between two bytes of a response")
    fetch_total_timeout_s: float = Field(30.0, gt=0, description="seconds one fetch may take in all, redirects included (a slow server ends here)")
    fetch_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="largest response body, after decompression")
    fetch_max_redirects: int = Field(5, ge=0, le=20, description="redirects followed per fetch")
    fetch_max_items: int = Field(500, ge=1, le=100_000, description="entries read per feed or sitemap refresh (the first ones, newest first in a feed)")
    fetch_concurrency: int = Field(4, ge=1, le=32, description="pages fetched at once during a refresh")
    fetch_host_delay_s: float = Field(0.5, ge=0, description="seconds between two requests to one host")
    fetch_retries: int = Field(2, ge=0, le=5, description="retries of a fetch that failed to connect, timed out, or got 429/5xx")
    fetch_backoff_s: float = Field(0.5, ge=0, description="wait before the first retry; doubles each retry")
    sources_schedule: bool = Field(True, description="the server refreshes due sources in the background (one worker does it)")
    sources_poll_s: float = Field(30.0, gt=0, description="seconds between the scheduler's looks for due sources")

    # operations
    metrics: Literal["off", "open", "keyed"] = Field("open", description="GET /metrics (Prometheus): off, open to all, or keyed (needs one of QA_API_KEYS)")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON line per request (request id, route, status, timings) and per log record")

    # API limits and auth
    api_keys: str = Field(
        "", description="API keys (16+ characters), separated by ';' (or ',' when none is scoped); 'key:news,sports' limits a key to those collections"
    )
    require_key_for_reads: bool = Field(False, description="searches and answers need a key too")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body")
    max_question_chars: int = Field(MAX_QUESTION_CHARS, ge=10, le=MAX_QUESTION_CHARS, description="longest question or query")
    max_documents_per_request: int = Field(1000, ge=1, description="documents per POST /v1/documents")
    max_document_chars: int = Field(2_000_000, ge=100, description="longest document text")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; '*' is refused")
    rate_limit_per_minute: int = Field(600, ge=0, description="requests per minute per API key (or client address); 0 = off")
    rate_limit_burst: int = Field(60, ge=1, description="requests a caller may make at once before the per-minute rate applies")
    max_concurrent_generations: int = Field(4, ge=1, description="asks/chats generating or queued for the LLM; more get 503")
    max_inflight_requests: int = Field(256, ge=1, description="requests in progress at once; more get 503")

    @field_validator("chroma_url", "openai_base_url", "answer_calibration", mode="before")
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
        if self.metrics == "keyed" and not self.api_key_list:
            raise ValueError("QA_METRICS=keyed needs QA_API_KEYS")
        if self.require_key_for_reads and not self.api_key_list:
            raise ValueError("QA_REQUIRE_KEY_FOR_READS needs QA_API_KEYS")
        return self

    @property
    def api_key_scopes(self) -> dict[str, frozenset[str] | None]:
        """Each key with the collections it may use (None: all). `a;b:news,sports` or, with no scope anywhere, `a,b`."""
        value = self.api_keys.strip()
        entries = re.split(r"[;\s]+", value) if ":" in value else re.split(r"[,;\s]+", value)
        scopes: dict[str, frozenset[str] | None] = {}
        for entry in filter(None, entries):
            key, sep, names = entry.partition(":")
            scopes[key] = frozenset(n.strip() for n in names.split(",") if n.strip()) if sep else None
        return scopes

    @property
    def api_key_list(self) -> list[str]:
        return list(self.api_key_scopes)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def reader_helps(self) -> bool:
        """The reader helps choose the sentences the LLM reads on the default path."""
        return self.sentence_reader_weight > 0 or self.wide_context_tokens > 0

    @property
    def loads_reader(self) -> bool:
        """The reader answers (QA_READER) or helps choose the sentences; either way extractive mode and reranking
        are there too."""
        return self.reader or self.reader_helps

    @property
    def threads(self) -> int:
        return self.llm_threads or usable_cores()


def settings_table() -> str:
    """docs/configuration.md: one row per setting, generated from the class so the two cannot drift apart."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None or default == "" else str(default).replace(str(Path.home()), "~")
        if isinstance(default, bool):
            shown = str(default).lower()
        if isinstance(default, Path) and not default.is_absolute():
            shown = f"./{default}"
        elif isinstance(default, Path) and default in (DEFAULT_PROMPTS, DEFAULT_READER, DEFAULT_ANSWER_CALIBRATION):
            shown = "./" + str(default.relative_to(PACKAGE_DIR.parent))
        rows.append(f"| `QA_{name.upper()}` | `{shown}` | {field.description or ''} |")
    return "\n".join(rows) + "\n"
