"""Where chunks, documents and their bookkeeping live: the Store protocol (base.py) and its Chroma backend."""

from __future__ import annotations

from qa_service.config import Settings
from qa_service.store.base import Store


def open_store(settings: Settings) -> Store:
    """The configured store: embedded Chroma under data_dir, or a Chroma server when chroma_url is set."""
    from qa_service.store.chroma import ChromaStore, make_client

    return ChromaStore(make_client(str(settings.data_dir), settings.chroma_url), settings.collection, write_batch=settings.write_batch_size)
