"""Collections: separate archives (one desk's, another's) served by one server.

Each collection is a `QAService` of its own (its chunks, documents, BM25 index, journal and sources), opened on first
use; they share the heavy parts: the encoder, the LLM, the reader and the writer lock. A request names its
collection (`collection` in the body, or `?collection=` on reads and deletes); without one it gets the configured
`QA_COLLECTION`. An API key may be limited to some collections (`QA_API_KEYS=key:news,sports`): it never reads or
writes another, and sees only its own in the list.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

from qa_service.config import COLLECTION_NAME, Settings
from qa_service.errors import BadRequest, NotFound, QAError
from qa_service.metrics import note
from qa_service.service import QAService
from qa_service.sources.registry import registry_path

Allowed = frozenset[str] | None  # the collections a caller's key may use; None: every one


class Forbidden(QAError):
    status = 403
    code = "forbidden_collection"


class Collections:
    def __init__(self, default: QAService) -> None:
        self.default = default
        self._open: dict[str, QAService] = {default.settings.collection: default}
        self._lock = threading.Lock()

    @property
    def default_name(self) -> str:
        return self.default.settings.collection

    def names(self, allowed: Allowed = None) -> list[str]:
        names = set(self.default.store.collections()) | {self.default_name}
        return sorted(n for n in names if allowed is None or n in allowed)

    def opened(self) -> Iterator[QAService]:
        with self._lock:
            services = list(self._open.values())
        yield from services

    @staticmethod
    def check_name(name: str) -> str:
        if not re.fullmatch(COLLECTION_NAME, name):
            raise BadRequest(f"invalid collection name {name!r}: 3-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit")
        return name

    @staticmethod
    def _admit(name: str, allowed: Allowed) -> None:
        if allowed is not None and name not in allowed:
            raise Forbidden(f"this API key may not use collection {name!r}")

    def _settings(self, name: str) -> Settings:
        return self.default.settings.model_copy(update={"collection": name})

    def get(self, name: str | None, allowed: Allowed = None) -> QAService:
        """The service of a collection that exists; 404 for one that does not, 403 for one the key may not use."""
        name = self.check_name(name) if name else self.default_name
        note(collection=name)
        self._admit(name, allowed)
        with self._lock:
            svc = self._open.get(name)
        if svc is not None:
            return svc
        if name not in self.names():
            raise NotFound(f"no collection {name!r}; create it with POST /v1/collections")
        return self._opening(name)

    def _opening(self, name: str) -> QAService:
        with self._lock:
            if name not in self._open:
                self._open[name] = QAService(self._settings(name), parent=self.default, load_llm=False)
            return self._open[name]

    def create(self, name: str, allowed: Allowed = None) -> QAService:
        self._admit(self.check_name(name), allowed)
        if name in self.names():
            raise QAError(f"collection {name!r} exists", code="conflict", status=409)
        if "__" in name:  # the store names a collection's bookkeeping <name>__docs and <name>__journal
            raise QAError(f"collection names with '__' are reserved: {name!r}", code="conflict", status=409)
        return self._opening(name)

    def delete(self, name: str, allowed: Allowed = None) -> None:
        """Drop a collection with its documents, BM25 index and sources; the configured default stays."""
        svc = self.get(name, allowed)
        if name == self.default_name:
            raise QAError(f"{name!r} is this server's QA_COLLECTION; it is not deleted", code="conflict", status=409)
        with svc.writer.hold():
            svc.store.drop()
        with self._lock:
            self._open.pop(name, None)
        svc.close(flush=False)
        registry = registry_path(svc.settings)
        for extra in ("", "-wal", "-shm"):
            registry.with_name(registry.name + extra).unlink(missing_ok=True)
        if svc.lexical.path is not None:
            svc.lexical.path.unlink(missing_ok=True)

    def count(self, name: str) -> tuple[int, int]:
        """Documents and chunks of a collection; one not opened yet is counted through a bare store, so listing or
        scraping never loads a collection's BM25 index."""
        from qa_service.store import open_store

        with self._lock:
            svc = self._open.get(name)
        store = svc.store if svc else open_store(self._settings(name))
        return store.list_documents(0, 1)[1], store.count_chunks()

    def counts(self) -> dict[str, tuple[int, int]]:
        """Documents and chunks of every collection (for /metrics)."""
        return {name: self.count(name) for name in self.names()}

    def with_sources(self) -> list[QAService]:
        """The collections that follow sources (their registry exists), opened: what the scheduler refreshes."""
        return [self.get(n) for n in self.names() if registry_path(self._settings(n)).exists()]

    def close(self) -> None:
        for svc in self.opened():
            if svc is not self.default:
                svc.close()
