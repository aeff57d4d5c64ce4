"""LLM backends: the OpenAI-compatible client against a real xllamacpp server, and its failure paths."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from qa_service.api.app import create_app
from qa_service.config import Settings
from qa_service.errors import BackendTimeout, BackendUnavailable
from qa_service.ingest.loaders import load_paths
from qa_service.llm.openai_compat import OpenAICompatLLM
from qa_service.service import QAService

from .conftest import SEEDS, free_port, stop, wait_until_up

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def openai_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa_service.llm.serve_local", "--model", "smollm2-135m-instruct-q4_1", "--port", str(port), "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/health", proc, "xllamacpp server")
    yield f"{base}/v1"
    stop(proc)


def test_openai_backend_streams_from_real_server(openai_server: str) -> None:
    llm = OpenAICompatLLM(openai_server, model="smollm2", timeout_s=60)
    deltas = list(llm.stream([{"role": "user", "content": "Say hello."}], max_tokens=16))
    assert len(deltas) >= 2 and "".join(deltas).strip()
    llm.close()


def test_api_on_openai_backend(openai_server: str, tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path / "s", llm_backend="openai", openai_base_url=openai_server, openai_model="smollm2")
    svc = QAService(s, embedder=embedder)
    svc.ingest(load_paths([SEEDS]))
    with TestClient(create_app(s, service=svc)) as c:
        r = c.post("/v1/ask", json={"question": "Who agreed to facilitate communication between the US and Iran?"})
    assert r.status_code == 200, r.text
    body = r.json()
    n = len(body["citations"])
    import re

    assert all(1 <= int(m) <= 5 for m in re.findall(r"\[(\d+)\]", body["answer"]))
    assert body["refused"] or n >= 1


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "garbage"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "slow":
            time.sleep(5)
        if self.mode == "500":
            self.send_response(500)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"data: {not json}\n\n" if self.mode == "garbage" else b"")


@pytest.fixture
def fake_server(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("H", (_Handler,), {"mode": request.param})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


@pytest.mark.parametrize("fake_server,error", [("garbage", BackendUnavailable), ("500", BackendUnavailable), ("slow", BackendTimeout)], indirect=["fake_server"])
def test_backend_faults_become_errors(fake_server: str, error: type[Exception]) -> None:
    llm = OpenAICompatLLM(fake_server, model="x", timeout_s=1.0, retries=1)
    t = time.monotonic()
    with pytest.raises(error):
        list(llm.stream([{"role": "user", "content": "hi"}], max_tokens=4))
    assert time.monotonic() - t < 1.0 + 1.0  # the timeout is one deadline across retries; one second of slack


@pytest.mark.parametrize("fake_server,status", [("garbage", 503), ("500", 503), ("slow", 504)], indirect=["fake_server"])
def test_backend_faults_in_api_are_errors_within_timeout(fake_server: str, status: int, tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path / "s", llm_backend="openai", openai_base_url=fake_server, llm_timeout_s=1.5, llm_retries=1)
    svc = QAService(s, embedder=embedder, load_llm=False)
    svc.ingest(load_paths([SEEDS / "000_29c5e578b24db1f9.txt"]))
    with TestClient(create_app(s, service=svc)) as c:
        for stream in (False, True):
            t = time.monotonic()
            r = c.post("/v1/ask", json={"question": "Who agreed to mediate between the US and Iran?", "stream": stream})
            elapsed = time.monotonic() - t
            assert r.status_code == status, r.text
            assert set(r.json()["error"]) == {"code", "message"} and "Traceback" not in r.text
            assert elapsed < 1.5 + 1.0, f"{elapsed:.2f} s"
    svc.close()


def test_connection_refused_is_503_in_api(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = Settings(data_dir=tmp_path / "s", llm_backend="openai", openai_base_url=f"http://127.0.0.1:{port}/v1", llm_timeout_s=2, llm_retries=1)
    svc = QAService(s, embedder=embedder, load_llm=False)
    svc.ingest(load_paths([SEEDS]))
    with TestClient(create_app(s, service=svc)) as c:
        r = c.post("/v1/ask", json={"question": "Who agreed to facilitate communication between the US and Iran?"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "backend_unavailable" and "Traceback" not in r.text
