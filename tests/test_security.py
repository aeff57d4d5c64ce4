"""Auth, rate and concurrency limits, CORS, unsafe settings, and bad files: the edge holds, nothing stored is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from qa_service.api.app import create_app
from qa_service.api.guards import TokenBucket
from qa_service.config import Settings
from qa_service.ingest.loaders import MAX_FILE_BYTES, load_paths
from qa_service.llm.base import Message, StreamingLLM
from qa_service.service import QAService

from .conftest import SEEDS
from .test_api import assert_error

KEY = "k3y-for-tests-0123456789abcdef"
OTHER = "another-key-9876543210fedcba"


class SlowLLM(StreamingLLM):
    """A stand-in that holds a generation slot for a while: only the concurrency path is under test here."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()

    def stream(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> Iterator[str]:
        self.started.set()
        time.sleep(self.seconds)
        yield "Russia [1].\nSHORT: Russia"


def make_client(tmp_path: Path, embedder, llm=None, **overrides) -> TestClient:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path / "store", collection="sec-news", **overrides)
    svc = QAService(s, embedder=embedder, llm=llm or SlowLLM(0), load_llm=False)
    svc.ingest(load_paths([SEEDS / "000_29c5e578b24db1f9.txt"]))
    return TestClient(create_app(s, service=svc))


DOC = {"documents": [{"id": "sec-1", "title": "Test", "text": "The Quillon Bay ferry carries 300 passengers a day."}]}


def test_writes_need_a_key_reads_do_not(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with make_client(tmp_path, embedder, api_keys=f"{KEY},{OTHER}") as c:
        assert assert_error(c.post("/v1/documents", json=DOC), 401)["code"] == "unauthorized"
        assert_error(c.post("/v1/documents", json=DOC, headers={"X-API-Key": "wrong-key-wrong-key"}), 401)
        assert_error(c.post("/v1/documents", json=DOC, headers={"Authorization": f"Basic {KEY}"}), 401)
        assert_error(c.delete("/v1/documents/sec-1"), 401)
        assert_error(c.post("/v1/documents/upload", files={"files": ("a.txt", b"text")}), 401)
        assert c.post("/v1/documents", json=DOC, headers={"X-API-Key": KEY}).status_code == 200
        assert c.post("/v1/documents", json=DOC, headers={"Authorization": f"Bearer {OTHER}"}).json()["unchanged"] == 1
        assert c.post("/v1/search", json={"query": "Russia"}).status_code == 200
        assert c.get("/v1/documents").json()["total"] == 2
        assert c.delete("/v1/documents/sec-1", headers={"X-API-Key": KEY}).status_code == 204


def test_reads_need_a_key_when_configured(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with make_client(tmp_path, embedder, api_keys=KEY, require_key_for_reads=True) as c:
        assert_error(c.post("/v1/search", json={"query": "Russia"}), 401)
        assert_error(c.get("/v1/documents"), 401)
        assert_error(c.post("/v1/ask", json={"question": "Who mediates?"}), 401)
        assert c.post("/v1/search", json={"query": "Russia"}, headers={"X-API-Key": KEY}).status_code == 200
        assert c.get("/healthz").status_code == 200, "health stays open for load balancers"
        schema = c.get("/openapi.json").json()
        assert {"APIKeyHeader", "HTTPBearer"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"api_keys": "changeme"}, "placeholder"),
        ({"api_keys": "short-key"}, "shorter than 16"),
        ({"require_key_for_reads": True}, "needs QA_API_KEYS"),
        ({"cors_origins": "*"}, "explicitly"),
    ],
)
def test_unsafe_settings_refuse_to_start(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**overrides)  # type: ignore[arg-type]


def test_rate_limit_429_with_retry_after(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with make_client(tmp_path, embedder, rate_limit_per_minute=6, rate_limit_burst=3, api_keys=KEY) as c:
        codes = [c.get("/v1/documents").status_code for _ in range(3)]
        r = c.get("/v1/documents")
        assert codes == [200, 200, 200]
        err = assert_error(r, 429)
        assert err["code"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 10
        # another caller (a key) has its own bucket
        assert c.get("/v1/documents", headers={"X-API-Key": KEY}).status_code == 200


def test_token_bucket_refills() -> None:
    bucket = TokenBucket(per_minute=600, burst=1)
    assert bucket.take("a") == 0
    wait = bucket.take("a")
    assert 0 < wait <= 0.1
    time.sleep(wait + 0.01)
    assert bucket.take("a") == 0


def test_concurrency_limit_503_then_recovers(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    slow = SlowLLM(1.5)
    with make_client(tmp_path, embedder, llm=slow, max_concurrent_generations=1) as c:
        first: dict[str, int] = {}
        t = threading.Thread(target=lambda: first.update(code=c.post("/v1/ask", json={"question": "Who agreed to mediate?"}).status_code))
        t.start()
        assert slow.started.wait(10)
        r = c.post("/v1/ask", json={"question": "Who agreed to mediate?"})
        err = assert_error(r, 503)
        assert err["code"] == "busy" and r.headers["retry-after"]
        assert c.post("/v1/search", json={"query": "Russia"}).status_code == 200, "search is not held up by generation"
        t.join(10)
        assert first["code"] == 200
        slow.seconds = 0
        assert c.post("/v1/ask", json={"question": "Who agreed to mediate?"}).status_code == 200


def test_cors_allows_only_listed_origins(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with make_client(tmp_path, embedder, cors_origins="https://news.example.org") as c:
        pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        ok = c.options("/v1/search", headers={"Origin": "https://news.example.org", **pre})
        assert ok.headers["access-control-allow-origin"] == "https://news.example.org"
        bad = c.options("/v1/search", headers={"Origin": "https://evil.example.com", **pre})
        assert "access-control-allow-origin" not in bad.headers
        r = c.get("/v1/documents", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_bad_files_fail_alone_and_the_batch_goes_on(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    files = {
        "binary.txt": b"\x00\x01\x02PNG\x00" * 100,
        "latin1.txt": "Caf\xe9 au lait".encode("latin-1"),
        "empty.md": b"   \n",
        "lines.jsonl": b'{"title": "A", "text": "Good line about the Quillon ferry."}\n{not json\n{"title": "no text"}\n',
        "scripts.html": b"<html><head><script>var x = 1;</script></head><body><div></div></body></html>",
        "bad.json": b'{"title": ',
        "notes.pdf": b"%PDF-1.4",
        "good.md": b"---\ntitle: Harbor Lights\n---\nThe Harbor Lights Festival drew 12,400 visitors.\n",
    }
    with make_client(tmp_path, embedder) as c:
        before = c.get("/v1/documents").json()["total"]
        r = c.post("/v1/documents/upload", files=[("files", (name, data)) for name, data in files.items()])
        assert r.status_code == 200, r.text
        report = r.json()
        errors = {i["origin"]: i["error"] for i in report["items"] if i["status"] == "failed"}
        assert report["added"] == 2 and report["failed"] == 8, report
        assert "binary" in errors["binary.txt"] and "UTF-8" in errors["latin1.txt"] and "empty" in errors["empty.md"]
        assert "malformed JSON line" in errors["lines.jsonl:2"] and "text" in errors["lines.jsonl:3"]
        assert "no article text" in errors["scripts.html"] and "malformed JSON" in errors["bad.json"]
        assert "unsupported" in errors["notes.pdf"]
        assert c.get("/v1/documents").json()["total"] == before + 2
        # a 50 MB file is refused by the body limit as a whole, and nothing stored changes
        big = b"a" * (10 * 1024 * 1024 + 1)
        assert_error(c.post("/v1/documents/upload", files={"files": ("big.txt", big)}), 413)
        assert c.get("/v1/documents").json()["total"] == before + 2


def test_oversized_file_on_disk_is_a_per_file_error(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: 50 MB without writing it
    good = tmp_path / "good.txt"
    good.write_text("Port Elsin held its lantern parade on Saturday.")
    items = list(load_paths([big, good]))
    assert [i.error is None for i in items] == [False, True]
    assert "byte limit" in (items[0].error or "")
