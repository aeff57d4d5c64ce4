"""What an operator watches: Prometheus metrics and one structured log line per request.

The metrics are prometheus-client objects at module level, recorded where things happen (the service records answer
stages and ingest counts, the generation slots their queue depth and rejections, the request middleware requests and
latency). Several API workers share them through prometheus-client's multiprocess mode: `qa-service serve --workers
N` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start, and /metrics then sums every worker's
files. Document and chunk counts are read from the store when scraped, so they are right whichever worker wrote.

The request log line carries the request id, route, status, duration, the collection and the answer's stage timings
(a request's timings dict lives in a context variable the service fills); never a key, a question or article text.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)

REQUESTS = Counter("qa_http_requests", "HTTP requests by route template, method and status", ["route", "method", "status"])
LATENCY = Histogram("qa_http_request_seconds", "HTTP request duration by route template (a stream: until its last event)", ["route"], buckets=SECONDS)
STAGE = Histogram("qa_answer_stage_seconds", "answer time by stage: retrieve (and read), generate, first token, total", ["stage"], buckets=SECONDS)
QUEUE = Gauge("qa_llm_queue_depth", "asks and chats generating or waiting for the LLM", multiprocess_mode="livesum")
REJECTED = Counter("qa_llm_rejections", "asks and chats refused (503) because every generation slot was taken")
INGESTED = Counter("qa_ingest_documents", "documents ingested, by outcome", ["status"])
RETRIES = Counter("qa_answer_retries", "answers refused over the narrow evidence and asked again over the wide one, by refusal reason", ["reason"])
ANSWERS = Counter("qa_answers", "answers by mode and outcome (answered, refused)", ["mode", "outcome"])
CONFIDENCE = Histogram(
    "qa_answer_confidence", "calibrated confidence of the answers that were not refused, by mode", ["mode"], buckets=tuple(i / 10 for i in range(1, 11))
)

# the current request's extra log fields (its collection, its answer's stage timings); the request middleware sets a
# fresh dict per request and writes it into that request's log line
log_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("qa_log_fields", default=None)


def note(**fields: Any) -> None:
    """Add fields to the current request's log line (no-op outside a request)."""
    current = log_fields.get()
    if current is not None:
        current.update(fields)


def observe_answer(retrieve_ms: float, generate_ms: float, total_ms: float, first_token_ms: float | None) -> None:
    for stage, ms in (("retrieve", retrieve_ms), ("generate", generate_ms), ("total", total_ms), ("first_token", first_token_ms)):
        if ms is not None:
            STAGE.labels(stage).observe(ms / 1000)
    note(retrieve_ms=retrieve_ms, generate_ms=generate_ms, first_token_ms=first_token_ms)


def observe_outcome(mode: str, refused: bool, confidence: float | None) -> None:
    """The refusal rate and the confidence distribution: a shift in either, with no change deployed, means the questions
    or the archive moved away from what the answer calibration was fitted on."""
    ANSWERS.labels(mode, "refused" if refused else "answered").inc()
    if confidence is not None and not refused:
        CONFIDENCE.labels(mode).observe(confidence)


def observe_ingest(added: int, updated: int, unchanged: int, failed: int) -> None:
    for status, n in (("added", added), ("updated", updated), ("unchanged", unchanged), ("failed", failed)):
        if n:
            INGESTED.labels(status).inc(n)


class StoreCollector(Collector):
    """Documents and chunks per collection, and the build, read when scraped."""

    def __init__(self, counts: Callable[[], dict[str, tuple[int, int]] | None], settings: Any, version: str) -> None:
        self.counts = counts  # documents and chunks by collection; None while the models load
        self.settings = settings
        self.version = version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.settings
        info = GaugeMetricFamily("qa_build_info", "version and models of this server", labels=["version", "embedding_model", "llm_backend", "llm_model", "reader"])
        llm = s.openai_model if s.llm_backend == "openai" else s.llm_model
        info.add_metric([self.version, s.embedding_model, s.llm_backend, llm, str(s.reader).lower()], 1)
        yield info
        try:
            counts = self.counts()
        except Exception:  # the store is down: the scrape still answers, without the counts
            logging.getLogger(__name__).warning("metrics: the store did not answer")
            return
        if counts is None:
            return
        docs = GaugeMetricFamily("qa_documents", "documents stored, by collection", labels=["collection"])
        chunks = GaugeMetricFamily("qa_chunks", "chunks stored, by collection", labels=["collection"])
        for name, (n_docs, n_chunks) in counts.items():
            docs.add_metric([name], n_docs)
            chunks.add_metric([name], n_chunks)
        yield docs
        yield chunks


def exposition(extra: Collector) -> bytes:
    """The text format of every metric: this process's, or every worker's in multiprocess mode."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    own = CollectorRegistry(auto_describe=False)
    own.register(extra)
    return generate_latest(registry) + generate_latest(own)


class _Json(logging.Formatter):
    """JSON lines through python-json-logger, with the time in UTC ISO form and the level."""

    def __init__(self) -> None:
        super().__init__()
        from pythonjsonlogger.json import JsonFormatter

        self._json = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                                   datefmt="%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        return self._json.format(record)


def configure_logging(log_format: str) -> None:
    """QA_LOG_FORMAT=json: the service's loggers (the request log included) write JSON lines to stderr at INFO."""
    if log_format != "json":
        return
    logger = logging.getLogger("qa_service")
    if any(isinstance(h.formatter, _Json) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_Json())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
