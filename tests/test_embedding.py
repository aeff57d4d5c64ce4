"""The ONNX encoder (the default) against sentence-transformers' own torch path, on the real packaged model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from qa_service.embedding import SentenceTransformerEmbedder, onnx_path

TEXTS = [
    "Russia has agreed to facilitate communication between the US and Iran.",
    "Heavy rain flooded the centre of Lisbon on Monday, the city's mayor said. " * 40,  # past the 256-token limit
    "Úrsula Pueyo had a faster time of 20.32.",
    "",
]


def test_onnx_export_matches_torch_vectors(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.backend == "onnx"
    onnx = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=tmp_path)  # exports into tmp_path
    exported = onnx_path("all-MiniLM-L6-v2", tmp_path)
    assert exported.stat().st_size > 50_000_000
    assert not list(exported.parent.glob("*.tmp"))
    torch = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="torch")
    a, b = onnx.embed(TEXTS), torch.embed(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.9999
    # batches are sorted by length inside; the rows still come back in the caller's order
    assert np.allclose(onnx.embed(TEXTS[::-1]), a[::-1], atol=1e-5)
    assert np.allclose(onnx.embed_query(TEXTS[0]), a[0], atol=1e-5)
    assert onnx.embed([]).shape == (0, 384)
    # an ingest-sized batch goes through torch (loaded on first need) and lands on the same vectors
    bulk = [f"{t} (copy {i})" for i in range(40) for t in TEXTS[:3]]
    onnx.bulk_threshold = 100
    via_torch = onnx.embed(bulk)
    onnx.bulk_threshold = 0
    assert (via_torch * onnx.embed(bulk)).sum(axis=1).min() > 0.9999


def test_onnx_path_imports_neither_torch_nor_sentence_transformers(embedder: SentenceTransformerEmbedder) -> None:
    """The point of the ONNX path on a server: a few hundred MB of torch stay out of the process."""
    code = (
        "import sys; from qa_service.embedding import SentenceTransformerEmbedder as E; "
        "e = E('all-MiniLM-L6-v2'); assert e.backend == 'onnx' and e.embed(['a sentence']).shape == (1, 384); "
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"
