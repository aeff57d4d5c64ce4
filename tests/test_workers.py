"""`qa-service serve --workers 2` against a real `chroma run` server: every worker sees every write at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, stop, wait_until_up

pytestmark = pytest.mark.server

WORKERS = 2


def fresh() -> httpx.Client:
    """A client without keep-alive, so requests spread over the workers instead of sticking to one."""
    return httpx.Client(timeout=120, limits=httpx.Limits(max_keepalive_connections=0))


@pytest.fixture(scope="module")
def api(chroma_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("workers")
    port = free_port()
    env = {
        **os.environ,
        "QA_CHROMA_URL": chroma_server,
        "QA_COLLECTION": f"w-{uuid.uuid4().hex[:8]}",
        "QA_DATA_DIR": str(tmp / "data"),
        "QA_LLM_MODEL": "smollm2-135m-instruct-q4_1",
        "QA_RATE_LIMIT_PER_MINUTE": "0",
        "QA_LOG_FORMAT": "json",
    }
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "qa_service.cli", "serve", "--workers", str(WORKERS), "--port", str(port), "--host", "127.0.0.1"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:  # a server whose setup failed is stopped too, not left running after the session
        wait_until_up(f"{url}/healthz", proc, "qa-service serve --workers 2", tmp / "serve.log", timeout=180)
        with fresh() as c:  # both workers answer; the kernel may hand many connections in a row to one, so poll a while
            seen: set[int] = set()
            deadline = time.monotonic() + 120
            while len(seen) < WORKERS and time.monotonic() < deadline:
                r = c.get(f"{url}/healthz")
                if r.status_code == 200:
                    seen.add(r.json()["worker"])
                time.sleep(0.02)
        assert len(seen) == WORKERS, f"only workers {seen} answered"
        yield url
    finally:
        stop(proc, 20)
        log.close()
    text = Path(tmp / "serve.log").read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    # QA_LOG_FORMAT=json: every request a JSON line, from both workers, and uvicorn's access lines are off
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == "qa_service.access"]
    assert len(requests) >= 50 and all({"request_id", "route", "status", "duration_ms"} <= set(r) for r in requests)
    assert '"GET /healthz HTTP/1.1" 200' not in text


def article(i: int, text: str | None = None) -> dict[str, str]:
    return {"id": f"w{i:03d}", "title": f"Harbour report {i}", "text": text or f"The harbour of Port Zeta{i:03d} reopened after a storm. Pilots guided {i} ships in."}


def test_writes_through_both_workers_are_serialised_and_seen_by_both(api: str, figures) -> None:  # type: ignore[no-untyped-def]
    # 24 concurrent single-article writes land on either worker; the writer lock serialises them
    def post(i: int) -> tuple[int, int]:
        with fresh() as c:
            r = c.post(f"{api}/v1/documents", json={"documents": [article(i)]})
            return r.status_code, c.get(f"{api}/healthz").json()["worker"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(post, range(24)))
    assert all(status == 200 for status, _ in results), [status for status, _ in results]
    with fresh() as c:
        listed = c.get(f"{api}/v1/documents", params={"limit": 100}).json()
        assert listed["total"] == 24
        assert sum(d["chunks"] for d in listed["documents"]) == 24  # one chunk each: none duplicated or lost

    # every article is found by its rare word through BM25 and dense, on whichever worker answers
    answered_by: set[int] = set()
    misses = 0
    for i in range(24):
        with fresh() as c:
            hits = c.post(f"{api}/v1/search", json={"query": f"Zeta{i:03d}", "top_k": 3}).json()["results"]
            misses += not hits or hits[0]["doc_id"] != f"w{i:03d}"
            answered_by.add(c.get(f"{api}/healthz").json()["worker"])
    assert misses == 0
    # an edit through one worker, then reads through any: the old words are gone everywhere
    with fresh() as c:
        assert c.post(f"{api}/v1/documents", json={"documents": [article(5, "The lighthouse at Cape Omicron was repainted.")]}).status_code == 200
    stale = 0
    for _ in range(10):
        with fresh() as c:
            hits = c.post(f"{api}/v1/search", json={"query": "Zeta005", "top_k": 3}).json()["results"]
            stale += any(h["doc_id"] == "w005" for h in hits)
            new = c.post(f"{api}/v1/search", json={"query": "Omicron lighthouse", "top_k": 1}).json()["results"]
            stale += not new or new[0]["doc_id"] != "w005"
    assert stale == 0
    figures(f"workers: {WORKERS} API processes on one chroma server: 24 concurrent writes, 0 lost or duplicated, "
            f"24/24 found, {len(answered_by)} workers answered searches, 0 stale reads after an edit")


def _samples(text: str, name: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)}


def test_metrics_sum_every_workers_requests(api: str) -> None:
    """Runs after the writes above: whichever worker answers /metrics reports both workers' counts."""
    with fresh() as c:
        before = _samples(c.get(f"{api}/metrics").text, "qa_http_requests_total")
        for _ in range(20):
            assert c.get(f"{api}/v1/documents", params={"limit": 1}).status_code == 200
        text = c.get(f"{api}/metrics").text
    after = _samples(text, "qa_http_requests_total")
    key = 'qa_http_requests_total{method="GET",route="/v1/documents",status="200"}'
    assert after[key] - before.get(key, 0) == 20
    writes = _samples(text, 'qa_http_requests_total{method="POST",route="/v1/documents"')
    assert sum(writes.values()) == 25  # the 24 concurrent writes and the edit, spread over both workers
    added = _samples(text, 'qa_ingest_documents_total{status="added"}')
    assert added == {'qa_ingest_documents_total{status="added"}': writes.get('qa_http_requests_total{method="POST",route="/v1/documents",status="200"}', 0) - 1}
    assert 'qa_documents{collection="w-' in text and "qa_build_info{" in text
