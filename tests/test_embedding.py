"""The ONNX encoders (int8, the default, and fp32) against sentence-transformers' own torch path, on the real
packaged model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa_service.embedding import SentenceTransformerEmbedder, onnx_path

TEXTS = [
    "Russia has agreed to facilitate communication between the US and Iran.",
    "Heavy rain flooded the centre of Lisbon on Monday, the city's mayor said. " * 40,  # past the 256-token limit
    "Úrsula Pueyo had a faster time of 20.32.",
    "",
]


@pytest.mark.slow
def test_onnx_export_matches_torch_vectors(tmp_path: Path) -> None:
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

    # int8: quantised from the fp32 export, close to the torch vectors, and it keeps ingest batches to itself
    int8 = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="onnx-int8", cache_dir=tmp_path)
    quantised = onnx_path("all-MiniLM-L6-v2", tmp_path, int8=True)
    assert int8.backend == "onnx-int8" and quantised.stat().st_size < 0.7 * exported.stat().st_size  # the word-embedding table stays fp32
    assert not list(exported.parent.glob("*.tmp"))
    c = (int8.embed(TEXTS) * b).sum(axis=1)
    assert c.min() > 0.97 and c.mean() > 0.98, c
    q = int8.embed(bulk)
    assert int8._model is None and (q * via_torch).sum(axis=1).mean() > 0.98  # noqa: SLF001 - torch never loaded


def test_int8_ranks_like_fp32(embedder: SentenceTransformerEmbedder) -> None:
    """Quantisation moves vectors a little; what matters is that the passage a question needs still ranks first."""
    assert embedder.backend == "onnx-int8"
    fp32 = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="onnx")
    passages = [
        "Russia has agreed to facilitate communication between the US and Iran, the Kremlin said.",
        "Heavy rain flooded the centre of Lisbon on Monday, the city's mayor said.",
        "The central bank raised interest rates by half a point to curb inflation.",
        "Úrsula Pueyo won the 200 metres final with a time of 20.32 seconds.",
        "The film festival opened with a documentary about coral reefs.",
    ]
    questions = ["Who will help the US and Iran talk?", "Where did the floods happen?", "Why were rates raised?",
                 "What was the winning time in the 200 metres?", "What film opened the festival?"]
    for enc in (embedder, fp32):
        scores = enc.embed(questions) @ enc.embed(passages).T
        assert list(scores.argmax(axis=1)) == list(range(len(questions)))


def test_onnx_path_imports_neither_torch_nor_sentence_transformers(embedder: SentenceTransformerEmbedder) -> None:
    """The point of the ONNX path on a server: a few hundred MB of torch stay out of the process."""
    code = (
        "import sys; from qa_service.embedding import SentenceTransformerEmbedder as E; "
        "e = E('all-MiniLM-L6-v2', backend='onnx-int8'); assert e.backend == 'onnx-int8' and e.embed(['a sentence']).shape == (1, 384); "
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_parallel_batches_give_the_vectors_of_sequential_ones() -> None:
    """Several batches run at once on separate threads; each row must still be the vector of its own text, equal to
    what one thread computes batch after batch (same batches, same int8 activation scales)."""
    texts = [*TEXTS, *(f"Match report {i}: the home side scored {i} goals in the {word} half." for i, word in enumerate(
        ["first", "second", "opening", "closing", "final", "early", "late", "last", "wet", "windy"]))]
    two = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=4, threads=2)
    one = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=4, threads=1)
    assert two.backend == one.backend == "onnx-int8"
    a, b = two.embed(texts), one.embed(texts)
    assert np.array_equal(a, b)
    singles = np.stack([one.embed([t])[0] for t in texts])
    assert ((a @ singles.T).argmax(axis=1) == np.arange(len(texts))).all()  # row i is text i's vector, not a neighbour's


def test_a_sentence_vector_does_not_depend_on_its_batch_or_the_cache() -> None:
    """int8 activations are quantised per batch, so a batch moves its texts' vectors; the sentences that passage
    selection compares with the question are encoded one by one, so the evidence for a question is the same whatever
    else its chunks hold and whichever questions came before."""
    target = "Lavrov relayed details of the US request to Iranian officials, including his counterpart Abbas Araghchi."
    long_mate = " ".join(TEXTS) * 2
    enc = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=8)
    assert enc.backend == "onnx-int8"
    alone = enc.embed([target])[0]
    assert not np.array_equal(enc.embed([long_mate, target, "Short."])[1], alone)  # why: a batch moves the vector
    first = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=8).embed_cached([long_mate, target, "Short."])[1]
    warmed = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=8)
    warmed.embed_cached([long_mate, *TEXTS])  # an earlier question's sentences, now cached
    assert np.array_equal(first, alone)
    assert np.array_equal(warmed.embed_cached([*TEXTS[:2], target, long_mate])[2], alone)
