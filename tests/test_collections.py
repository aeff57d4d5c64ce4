"""Collections: separate archives in one server; an API key limited to some collections never touches another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa_service.api.app import create_app
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.service import QAService

ADMIN = "admin-key-0123456789abcdef"
DESK_A = "desk-a-key-0123456789abcdef"
DESK_B = "desk-b-key-0123456789abcdef"


def doc(i: str, text: str) -> dict[str, str]:
    return {"id": i, "title": i, "text": text}


@pytest.fixture
def client(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[TestClient]:
    s = Settings(data_dir=tmp_path / "store", collection="news", sources_schedule=False, require_key_for_reads=True,
                 api_keys=f"{ADMIN}; {DESK_A}:desk-a; {DESK_B}:desk-b,news")
    svc = QAService(s, embedder=embedder, load_llm=False)
    with TestClient(create_app(s, service=svc)) as c:
        yield c
    svc.close()


def as_(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_collections_are_isolated(client: TestClient) -> None:
    h = as_(ADMIN)
    assert client.post("/v1/collections", json={"name": "desk-a"}, headers=h).status_code == 201
    r = client.post("/v1/collections", json={"name": "desk-b"}, headers=h)
    assert r.status_code == 201 and r.json() == {"name": "desk-b", "documents": 0, "chunks": 0, "default": False}
    assert client.post("/v1/collections", json={"name": "desk-b"}, headers=h).status_code == 409
    client.post("/v1/documents", json={"collection": "desk-a", "documents": [doc("a1", "The Port Alder ferry resumed sailing on Monday.")]}, headers=h)
    client.post("/v1/documents", json={"collection": "desk-b", "documents": [doc("b1", "The Linden Valley apple harvest lost a third to frost.")]}, headers=h)
    client.post("/v1/documents", json={"documents": [doc("n1", "The default desk reports a lighthouse repainted at Cape Omicron.")]}, headers=h)

    names = {c["name"]: c for c in client.get("/v1/collections", headers=h).json()["collections"]}
    assert {n: (c["documents"], c["default"]) for n, c in names.items() if n in {"desk-a", "desk-b", "news"}} == {
        "desk-a": (1, False), "desk-b": (1, False), "news": (1, True)}
    # each collection answers only from its own documents: search, list, get, delete
    hits = client.post("/v1/search", json={"collection": "desk-a", "query": "apple harvest frost"}, headers=h).json()["results"]
    assert {x["doc_id"] for x in hits} == {"a1"}
    assert [d["doc_id"] for d in client.get("/v1/documents?collection=desk-b", headers=h).json()["documents"]] == ["b1"]
    assert [d["doc_id"] for d in client.get("/v1/documents", headers=h).json()["documents"]] == ["n1"]
    assert client.get("/v1/documents/b1?collection=desk-a", headers=h).status_code == 404
    assert client.delete("/v1/documents/b1?collection=desk-a", headers=h).status_code == 404
    assert client.get("/v1/documents/b1?collection=desk-b", headers=h).status_code == 200
    # the same id in two collections is two documents
    client.post("/v1/documents", json={"collection": "desk-b", "documents": [doc("a1", "A different article that shares an id.")]}, headers=h)
    assert "ferry" in client.get("/v1/documents/a1?collection=desk-a", headers=h).json()["text"]

    metrics = client.get("/metrics").text
    assert 'qa_documents{collection="desk-a"} 1.0' in metrics and 'qa_documents{collection="desk-b"} 2.0' in metrics

    # unknown, invalid, deleting
    r = client.post("/v1/search", json={"collection": "nope", "query": "x"}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    for bad in ("a", "bad name", "-x-", "x" * 70):
        assert client.post("/v1/collections", json={"name": bad}, headers=h).status_code == 422
    assert client.post("/v1/collections", json={"name": "desk__docs"}, headers=h).status_code == 409  # the store's own suffix
    assert client.delete("/v1/collections/news", headers=h).status_code == 409  # the server's default stays
    assert client.delete("/v1/collections/desk-a", headers=h).status_code == 204
    assert client.get("/v1/documents?collection=desk-a", headers=h).status_code == 404
    assert "desk-a" not in {c["name"] for c in client.get("/v1/collections", headers=h).json()["collections"]}
    assert client.post("/v1/collections", json={"name": "desk-a"}, headers=h).json()["documents"] == 0  # recreated empty


def test_a_scoped_key_never_reads_or_writes_another_collection(client: TestClient) -> None:
    for name in ("desk-a", "desk-b"):
        client.post("/v1/collections", json={"name": name}, headers=as_(ADMIN))
        client.post("/v1/documents", json={"collection": name, "documents": [doc(f"{name}-1", f"Secret memo of {name} about the harbour budget.")]},
                    headers=as_(ADMIN))
    a = as_(DESK_A)
    assert [c["name"] for c in client.get("/v1/collections", headers=a).json()["collections"]] == ["desk-a"]
    assert client.get("/v1/documents?collection=desk-a", headers=a).json()["total"] == 1
    forbidden: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/v1/documents?collection=desk-b", None),
        ("GET", "/v1/documents", None),  # the default collection is not desk A's either
        ("GET", "/v1/documents/desk-b-1?collection=desk-b", None),
        ("DELETE", "/v1/documents/desk-b-1?collection=desk-b", None),
        ("POST", "/v1/search", {"collection": "desk-b", "query": "harbour budget"}),
        ("POST", "/v1/ask", {"collection": "desk-b", "question": "What is the memo about?"}),
        ("POST", "/v1/chat", {"collection": "desk-b", "messages": [{"role": "user", "content": "What is the memo about?"}]}),
        ("POST", "/v1/documents", {"collection": "desk-b", "documents": [doc("x", "planted")]}),
        ("POST", "/v1/sources", {"collection": "desk-b", "url": "https://example.org/rss.xml"}),
        ("GET", "/v1/sources?collection=desk-b", None),
        ("POST", "/v1/collections", {"name": "desk-c"}),
        ("DELETE", "/v1/collections/desk-b", None),
    ]
    for method, path, body in forbidden:
        r = client.request(method, path, json=body, headers=a)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_collection", (method, path, r.text)
    r = client.post("/v1/documents/upload?collection=desk-b", files={"files": ("x.txt", b"planted text")}, headers=a)
    assert r.status_code == 403
    # nothing of desk B moved, and its key still works on its own collections
    b = as_(DESK_B)
    assert client.get("/v1/documents?collection=desk-b", headers=b).json()["total"] == 1
    assert client.get("/v1/documents", headers=b).status_code == 200  # desk B may use the default too
    assert client.get("/v1/documents?collection=desk-a", headers=b).status_code == 403
    # a wrong key is refused, not treated as anonymous
    assert client.get("/v1/documents?collection=desk-a", headers=as_("wrong-key-0123456789abcdef")).status_code == 401


def test_api_key_scopes_parse() -> None:
    s = Settings(api_keys=f"{ADMIN}; {DESK_A}:desk-a ;{DESK_B}:desk-b,news")
    assert s.api_key_scopes == {ADMIN: None, DESK_A: frozenset({"desk-a"}), DESK_B: frozenset({"desk-b", "news"})}
    assert Settings(api_keys=f"{ADMIN},{DESK_A}").api_key_scopes == {ADMIN: None, DESK_A: None}
    with pytest.raises(ValueError, match="shorter than 16"):
        Settings(api_keys="short:news")
