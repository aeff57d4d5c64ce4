"""Operations: /metrics after real requests, the JSON request log line, request ids. (Several workers: test_workers.)"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa_service.api.app import create_app
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.metrics import configure_logging
from qa_service.service import QAService

KEY = "ops-key-0123456789abcdef"
DOC = {"id": "tide-1", "title": "Spring tides flood the quay", "text": "Spring tides flooded the Port Alder quay on Tuesday. The harbour master closed the fish market."}


def sample(text: str, name: str) -> float:
    """One sample's value from the text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def make(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[Any]:
    made: list[QAService] = []

    def build(llm: Any = None, **kw: Any) -> TestClient:
        s = Settings(data_dir=tmp_path / "store", collection="ops", sources_schedule=False, **kw)
        svc = QAService(s, embedder=embedder, llm=llm, load_llm=llm is not None)
        made.append(svc)
        return TestClient(create_app(s, service=svc))

    yield build
    for svc in made:
        svc.close()


@pytest.mark.llm
def test_metrics_after_real_requests(make: Any, llm: Any) -> None:
    with make(llm) as client:
        before = client.get("/metrics").text
        assert client.post("/v1/documents", json={"documents": [DOC]}).json()["added"] == 1
        for _ in range(3):
            assert client.post("/v1/search", json={"query": "spring tides"}).status_code == 200
        assert client.get("/v1/documents/nope").status_code == 404
        assert client.post("/v1/ask", json={"question": "Who closed the fish market?"}).status_code == 200
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text

    def delta(name: str) -> float:
        return sample(text, name) - sample(before, name)

    assert delta('qa_http_requests_total{method="POST",route="/v1/search",status="200"}') == 3
    assert delta('qa_http_requests_total{method="GET",route="/v1/documents/{doc_id}",status="404"}') == 1  # the template, not the id
    assert delta('qa_http_request_seconds_count{route="/v1/search"}') == 3
    assert delta('qa_ingest_documents_total{status="added"}') == 1
    for stage in ("retrieve", "generate", "first_token", "total"):
        assert delta(f'qa_answer_stage_seconds_count{{stage="{stage}"}}') == 1, stage
    assert sample(text, 'qa_documents{collection="ops"}') == 1 and sample(text, 'qa_chunks{collection="ops"}') == 1
    assert sample(text, "qa_llm_queue_depth") == 0
    assert 'qa_build_info{embedding_model="all-MiniLM-L6-v2",llm_backend="local",llm_model="qwen2.5-coder-1.5b-instruct-q4_k_m"' in text


def test_queue_depth_and_rejections(make: Any) -> None:
    with make(max_concurrent_generations=1) as client:
        before = client.get("/metrics").text
        release = client.app.state.qa.generations.acquire()  # one ask generating
        try:
            held = client.get("/metrics").text
            assert sample(held, "qa_llm_queue_depth") == 1
            r = client.post("/v1/ask", json={"question": "Who closed the fish market?"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "busy"
        finally:
            release()
        after = client.get("/metrics").text
    assert sample(after, "qa_llm_rejections_total") - sample(before, "qa_llm_rejections_total") == 1
    assert sample(after, "qa_llm_queue_depth") == 0
    assert sample(after, 'qa_http_requests_total{method="POST",route="/v1/ask",status="503"}') >= 1


def test_metrics_off_or_keyed(make: Any) -> None:
    with make(metrics="off") as client:
        assert client.get("/metrics").status_code == 404
    with make(metrics="keyed", api_keys=KEY) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
    with pytest.raises(ValueError, match="QA_METRICS=keyed needs QA_API_KEYS"):
        Settings(metrics="keyed")


@pytest.fixture
def json_log() -> Iterator[Any]:
    """QA_LOG_FORMAT=json as the server sets it up, its stream redirected to a buffer; undone afterwards."""
    logger = logging.getLogger("qa_service")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers.clear()
    configure_logging("json")
    (handler,) = logger.handlers
    buffer = io.StringIO()
    handler.setStream(buffer)  # type: ignore[attr-defined]

    def lines() -> list[dict[str, Any]]:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return [json.loads(line) for line in text.splitlines()]

    yield lines
    logger.handlers[:], logger.level, logger.propagate = saved


def test_json_request_log_lines(make: Any, json_log: Any) -> None:
    with make(api_keys=KEY) as client:
        json_log()  # drop the start-up lines
        r = client.post("/v1/documents", json={"documents": [DOC]}, headers={"X-API-Key": KEY, "X-Request-ID": "desk-7.req:42"})
        assert r.headers["X-Request-ID"] == "desk-7.req:42"
        bad = client.post("/v1/search", json={"query": "fish market"}, headers={"X-Request-ID": "not a token!"})
        generated = bad.headers["X-Request-ID"]
        assert len(generated) == 32 and generated != "not a token"
        assert client.get("/v1/documents/tide-1").status_code == 200
    lines = [line for line in json_log() if line["logger"] == "qa_service.access"]
    assert [line["route"] for line in lines] == ["/v1/documents", "/v1/search", "/v1/documents/{doc_id}"]
    first = lines[0]
    assert {"time", "level", "logger", "message", "request_id", "method", "route", "status", "duration_ms", "collection"} <= set(first)
    assert (first["request_id"], first["status"], first["collection"], first["level"]) == ("desk-7.req:42", 200, "ops", "INFO")
    assert lines[1]["request_id"] == generated
    everything = json.dumps(lines)
    assert KEY not in everything and "Spring tides flooded" not in everything and "fish market" not in everything


@pytest.mark.llm
def test_json_log_line_of_an_answer_carries_its_stage_timings(make: Any, llm: Any, json_log: Any) -> None:
    with make(llm) as client:
        client.post("/v1/documents", json={"documents": [DOC]})
        json_log()
        assert client.post("/v1/ask", json={"question": "Who closed the fish market?", "stream": True}).status_code == 200
    line = next(x for x in json_log() if x.get("route") == "/v1/ask")
    assert line["retrieve_ms"] > 0 and line["generate_ms"] > 0 and line["first_token_ms"] > 0
    assert "Who closed" not in json.dumps(line)
