import itertools
import json

from qa_service.ingest.chunking import chunk_text, count_tokens
from qa_service.text import sentences

from .conftest import SEED_DOC, SEEDS, SHARED


def test_chunk_offsets_map_back_exactly() -> None:
    texts = [(SEEDS / f"{SEED_DOC}.txt").read_text()]
    corpus = SHARED / "eval" / "qamr-wikinews" / "corpus.jsonl"
    if corpus.exists():
        texts += [json.loads(line)["text"] for line in corpus.read_text().splitlines()[:200]]
    for text in texts:
        chunks = chunk_text(text, 64, 16)
        assert chunks
        for c in chunks:
            assert text[c.start : c.end] == c.text
            assert count_tokens(c.text) <= 64 + 4
        assert chunks[0].start <= 2 and chunks[-1].end >= len(text.rstrip()) - 2


def test_overlap_and_order() -> None:
    text = " ".join(f"Sentence number {i} tells about the city of Lisbon." for i in range(60))
    chunks = chunk_text(text, 50, 20)
    assert len(chunks) > 3
    for a, b in itertools.pairwise(chunks):
        assert b.start > a.start and b.start < a.end  # overlap in characters


def test_sentences_keep_abbreviations_together() -> None:
    text = "The U.S. envoy met Mr. Lavrov. Talks ended."
    spans = [text[s:e] for s, e in sentences(text)]
    assert spans == ["The U.S. envoy met Mr. Lavrov.", "Talks ended."]


def test_sentences_do_not_split_numbers_or_unspaced_dots() -> None:
    text = "Pueyo had a time of 20.32 seconds. The U.S.-led talks ended. Next."
    got = [text[s:e] for s, e in sentences(text)]
    assert got == ["Pueyo had a time of 20.32 seconds.", "The U.S.-led talks ended.", "Next."]
