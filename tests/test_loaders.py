import json
from pathlib import Path

from qa_service.ingest.loaders import load_bytes, load_paths

from .conftest import SEED_DOC, SEEDS


def one(data: bytes | str, name: str):  # type: ignore[no-untyped-def]
    raw = data.encode() if isinstance(data, str) else data
    items = list(load_bytes(raw, name))
    assert len(items) == 1
    return items[0]


def test_txt_first_line_is_title_and_stem_is_id() -> None:
    item = one("\n\nBig storm hits Lisbon\nHeavy rain fell on Monday.\n", "storm-1.txt")
    assert item.article.title == "Big storm hits Lisbon"
    assert item.article.doc_id == "storm-1"
    assert "Heavy rain fell on Monday." in item.article.text


def test_md_front_matter_gives_title_and_fields() -> None:
    item = one("---\ntitle: Front title\nsource: Wire\npublished_at: 2024-05-01\n---\n# Heading\n\nBody text here.\n", "a.md")
    a = item.article
    assert (a.title, a.source, a.published_at) == ("Front title", "Wire", "2024-05-01")
    assert "Body text here." in a.text


def test_json_object_and_list_with_body_alias() -> None:
    obj = one(json.dumps({"title": "T", "body": "Some text.", "url": "https://example.org/a"}), "x.json")
    assert obj.article.text == "Some text." and obj.article.doc_id.startswith("doc_")
    items = list(load_bytes(json.dumps([{"id": "a", "title": "A", "text": "One."}, {"title": "B"}]).encode(), "l.json"))
    assert items[0].article.doc_id == "a"
    assert items[1].article is None and "text" in items[1].error


def test_jsonl_bad_lines_are_per_line_errors() -> None:
    data = '{"id": "1", "title": "a", "text": "Alpha."}\n{oops\n\n{"id": "2", "text": "Beta."}\n'
    items = list(load_bytes(data.encode(), "b.jsonl"))
    assert [i.article.doc_id if i.article else None for i in items] == ["1", None, "2"]
    assert "malformed JSON line" in items[1].error and items[1].origin == "b.jsonl:2"


def test_html_extracts_article_not_navigation() -> None:
    item = one((SEEDS / "wikinews-1017420.html").read_bytes(), "wikinews-1017420.html")
    a = item.article
    assert a.title == "The Arches hosts art event"
    assert "Home | News" not in a.text and "Arches" in a.text


def test_bad_inputs_are_clear_errors() -> None:
    assert "binary" in one(b"\x00\x01\x02abc", "x.txt").error
    assert "UTF-8" in one(b"caf\xe9 au lait", "x.txt").error
    assert "empty" in one(b"   \n", "x.md").error
    assert "malformed JSON" in one(b"{not json", "x.json").error
    assert "no article text" in one(b"<html><body><script>x()</script></body></html>", "x.html").error
    assert "unsupported" in one(b"hello", "x.pdf").error


def test_seed_folder_loads_every_format() -> None:
    items = list(load_paths([SEEDS]))
    assert all(i.article for i in items), [i.error for i in items if i.error]
    suffixes = {Path(i.origin.split(":")[0].split("[")[0]).suffix for i in items}
    assert suffixes == {".txt", ".md", ".json", ".jsonl", ".html"}
    assert SEED_DOC in {i.article.doc_id for i in items}
