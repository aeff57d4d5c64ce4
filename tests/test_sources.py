"""News sources against a real HTTP server on 127.0.0.1: feeds, sitemaps and pages in, kept fresh, fetched safely."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from qa_service.api.app import create_app
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.errors import QAError
from qa_service.ingest import fetch
from qa_service.ingest.feeds import canonical_url
from qa_service.ingest.fetch import Blocked, Fetcher, FetchError, Guard
from qa_service.schemas import SourceIn
from qa_service.service import QAService
from qa_service.sources import Scheduler
from tests.news_fixtures import FERRY, FESTIVAL, FROST, LIBRARY, html_paragraphs
from tests.site import Page, Site, article_html, atom, endless, redirect, rfc822, rss, sitemap, sitemap_index, slow

DAY = dt.datetime(2026, 11, 3, 9, 0)


def fast(tmp_path: Path, **kw: Any) -> Settings:
    base = dict(data_dir=tmp_path / "store", collection="test-news", fetch_allow_private=True, fetch_host_delay_s=0.0, fetch_backoff_s=0.05,
                fetch_retries=1, sources_schedule=False)
    return Settings(**(base | kw))


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    s.routes["/news/ferry"] = Page(article_html(*FERRY, published="2026-11-03T09:00:00Z", author="Jo Reyes"), etag='"ferry-1"')
    s.routes["/news/library"] = Page(article_html(*LIBRARY, published="2026-11-05T18:30:00Z"), last_modified=rfc822(DAY))
    s.routes["/news/festival"] = Page(article_html(*FESTIVAL))
    s.routes["/rss.xml"] = Page(
        rss([
            {"title": FERRY[0], "link": "/news/ferry?utm_source=rss", "date": rfc822(DAY), "description": "The ferry is back."},
            {"title": LIBRARY[0], "link": "/news/library", "date": rfc822(DAY + dt.timedelta(days=2)), "description": "A library."},
        ]),
        "application/rss+xml",
        etag='"rss-1"',
    )
    with s.running():
        yield s


@pytest.fixture
def svc(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[QAService]:
    service = QAService(fast(tmp_path), embedder=embedder, load_llm=False)
    yield service
    service.close()


def titles(svc: QAService) -> dict[str, Any]:
    return {d.title: d for d in svc.list_documents(0, 100).documents}


def test_rss_feed_pages_are_fetched_dated_and_deduplicated(svc: QAService, site: Site) -> None:
    result = svc.sources.add(SourceIn(url=site.url("/rss.xml")))
    assert result.source.kind == "feed" and result.source.last_status == "ok" and result.source.documents == 2
    assert (result.report.added, result.report.failed) == (2, 0)
    docs = titles(svc)
    ferry = docs[FERRY[0]]
    # the tracking parameter is gone from the stored URL; the date is the feed's, the author the page's
    assert ferry.url == site.url("/news/ferry") and ferry.published_at == "2026-11-03T09:00:00Z" and ferry.author == "Jo Reyes"
    assert ferry.source == "127.0.0.1"
    assert svc.get_document(ferry.doc_id).text.count("Marta Oyelaran") == 1

    # a second feed naming the same article (another tracking parameter) stores nothing twice
    site.routes["/other.xml"] = Page(rss([{"title": FERRY[0], "link": "/news/ferry?fbclid=abc", "date": rfc822(DAY)}]), "application/rss+xml")
    again = svc.sources.add(SourceIn(url=site.url("/other.xml")))
    assert (again.report.added, again.report.unchanged) == (0, 1)
    assert svc.list_documents().total == 2


def test_refresh_is_conditional_updates_changed_pages_and_keeps_dropped_items(svc: QAService, site: Site) -> None:
    sid = svc.sources.add(SourceIn(url=site.url("/rss.xml"))).source.id
    # nothing changed: the feed answers 304 to its ETag
    same = svc.sources.refresh(sid)
    assert same.source.last_status == "not modified" and same.report.items == []
    assert site.hits("/rss.xml")[-1]["if-none-match"] == '"rss-1"'

    # the feed changes (the library item leaves it) and the ferry page is rewritten
    site.routes["/rss.xml"] = Page(rss([{"title": FERRY[0], "link": "/news/ferry", "date": rfc822(DAY)}]), "application/rss+xml", etag='"rss-2"')
    site.routes["/news/ferry"] = Page(article_html(FERRY[0], [*FERRY[1], "Bluewater Lines said fares would not rise this winter."]), etag='"ferry-2"')
    changed = svc.sources.refresh(sid)
    assert (changed.report.updated, changed.report.added) == (1, 0)
    assert site.hits("/news/ferry")[-1]["if-none-match"] == '"ferry-1"'  # the page's validator from the first fetch
    docs = titles(svc)
    assert LIBRARY[0] in docs  # dropped from the feed, kept in the store
    assert "fares would not rise" in svc.get_document(docs[FERRY[0]].doc_id).text

    # a page that has not changed answers 304 and stays a no-op
    site.routes["/rss.xml"] = Page(rss([{"title": FERRY[0], "link": "/news/ferry", "date": rfc822(DAY)}]), "application/rss+xml", etag='"rss-3"')
    third = svc.sources.refresh(sid)
    assert (third.report.unchanged, third.report.updated, third.report.added) == (1, 0, 0)
    assert site.hits("/news/ferry")[-1]["if-none-match"] == '"ferry-2"'
    assert svc.list_documents().total == 2


def test_atom_feed_with_full_text_needs_no_page_fetch(svc: QAService, site: Site) -> None:
    site.routes["/atom"] = Page(
        atom([{"title": FROST[0], "link": "/valley/frost", "updated": "2026-10-30T07:00:00Z", "author": "Ines Moreau", "content": html_paragraphs(FROST[1])}]),
        "application/atom+xml",
    )
    result = svc.sources.add(SourceIn(url=site.url("/atom")))
    assert result.source.kind == "feed" and result.report.added == 1
    assert site.hits("/valley/frost") == []
    doc = titles(svc)[FROST[0]]
    assert (doc.published_at, doc.author, doc.url) == ("2026-10-30T07:00:00Z", "Ines Moreau", site.url("/valley/frost"))
    assert "Tomas Verhoeven" in svc.get_document(doc.doc_id).text


def test_sitemap_index_and_page_sources(svc: QAService, site: Site) -> None:
    site.routes["/sitemap.xml"] = Page(sitemap_index([site.url("/sitemap-news.xml")]), "application/xml")
    site.routes["/sitemap-news.xml"] = Page(sitemap([(site.url("/news/library"), "2026-11-05"), (site.url("/news/festival"), None)]), "application/xml")
    result = svc.sources.add(SourceIn(url=site.url("/sitemap.xml"), refresh_minutes=0))
    assert result.source.kind == "sitemap" and result.report.added == 2 and result.source.next_refresh_at is None
    assert titles(svc)[LIBRARY[0]].published_at == "2026-11-05"
    page = svc.sources.add(SourceIn(url=site.url("/news/ferry")))
    assert page.source.kind == "page" and page.report.added == 1


def test_robots_txt_is_honoured(svc: QAService, site: Site) -> None:
    site.routes["/robots.txt"] = Page(b"User-agent: qa-service\nDisallow: /news/library\n", "text/plain")
    result = svc.sources.add(SourceIn(url=site.url("/rss.xml")))
    assert result.report.added == 1 and result.report.failed == 1
    failed = next(i for i in result.report.items if i.status == "failed")
    assert "robots.txt" in (failed.error or "") and site.hits("/news/library") == []


def test_sources_survive_a_restart_and_removal_keeps_or_deletes_documents(tmp_path: Path, embedder: SentenceTransformerEmbedder, site: Site) -> None:
    s = fast(tmp_path)
    first = QAService(s, embedder=embedder, load_llm=False)
    sid = first.sources.add(SourceIn(url=site.url("/rss.xml"), refresh_minutes=15)).source.id
    site.routes["/atom"] = Page(atom([{"title": FROST[0], "link": "/f", "updated": "2026-10-30T07:00:00Z", "author": "I", "content": html_paragraphs(FROST[1])}]),
                                "application/atom+xml")
    other = first.sources.add(SourceIn(url=site.url("/atom"))).source.id
    first.close()
    second = QAService(s, embedder=embedder, load_llm=False)
    kept = second.sources.get(sid)
    assert (kept.kind, kept.refresh_minutes, kept.documents, kept.last_status) == ("feed", 15, 2, "ok")
    assert second.sources.refresh(sid).source.last_status == "not modified"  # the validators persisted too
    second.sources.remove(sid)
    assert second.list_documents().total == 3
    assert second.sources.remove(other, delete_documents=True) == 1
    assert second.list_documents().total == 2 and second.sources.all() == []
    with pytest.raises(QAError) as err:
        second.sources.get(sid)
    assert err.value.status == 404
    second.close()


def test_failures_back_off_and_one_broken_source_does_not_block_others(svc: QAService, site: Site) -> None:
    site.routes["/broken.xml"] = Page(b"<rss><channel><item><title>cut off", "application/rss+xml")
    broken = svc.sources.add(SourceIn(url=site.url("/broken.xml"), refresh_minutes=1)).source
    assert broken.last_status.startswith("error: not a readable feed") and broken.failures == 1 and broken.documents == 0
    due1 = dt.datetime.fromisoformat(broken.next_refresh_at.replace("Z", "+00:00"))
    assert 50 < (due1 - dt.datetime.now(dt.UTC)).total_seconds() <= 60
    assert svc.sources.refresh(broken.id).source.failures == 2
    good = svc.sources.add(SourceIn(url=site.url("/rss.xml"), refresh_minutes=1)).source
    # both due now: the broken one fails again, the good one still refreshes
    svc.sources.registry.record(broken.id, fields={"next_due": 0}, items=[])
    svc.sources.registry.record(good.id, fields={"next_due": 0}, items=[])
    results = {r.source.id: r for r in svc.sources.refresh_due()}
    assert results[broken.id].source.failures == 3 and results[good.id].source.last_status == "not modified"
    after = svc.sources.get(broken.id)
    wait = (dt.datetime.fromisoformat(after.next_refresh_at.replace("Z", "+00:00")) - dt.datetime.now(dt.UTC)).total_seconds()
    assert 230 < wait <= 240  # 1 minute doubled twice


def test_scheduler_refreshes_due_sources_and_only_one_worker_leads(svc: QAService, site: Site) -> None:
    sid = svc.sources.add(SourceIn(url=site.url("/rss.xml"), refresh_minutes=1)).source.id
    svc.sources.registry.record(sid, fields={"next_due": 0}, items=[])
    hits = len(site.hits("/rss.xml"))
    leader, follower = (Scheduler(lambda: [svc.sources], svc.settings.data_dir, 0.1) for _ in range(2))
    leader.start()
    deadline = time.monotonic() + 10
    while svc.sources.get(sid).last_status != "not modified" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.sources.get(sid).last_status == "not modified"
    assert len(site.hits("/rss.xml")) == hits + 1  # once: refreshed, it is no longer due
    assert leader._leader() and not follower._leader()  # the lock is held by the running scheduler
    leader.stop()
    assert follower._leader()  # taken over once the leader is gone
    follower.stop()


# bad input: each ends as a clear error within its limits, and nothing stored is lost or duplicated
@pytest.mark.parametrize(
    ("path", "route", "error"),
    [
        ("/malformed.xml", Page(b"<?xml version='1.0'?><rss><channel><item><title>x</ti", "application/rss+xml"), "not a readable feed"),
        ("/empty.html", Page(b"<html><body><nav>Home</nav></body></html>"), "no article text"),
        ("/huge", Page(b"x" * 10, "text/html", headers={"Content-Length": str(10 * 1024**3)}), "over the"),
        ("/endless", endless, "more than"),
        ("/loop-a", redirect("/loop-b"), "redirect loop"),
        ("/image.png", Page(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png"), "neither a feed"),
        ("/gone", Page(b"gone", "text/plain", 410), "HTTP 410"),
    ],
)
def test_bad_sources_fail_clearly_and_lose_nothing(svc: QAService, site: Site, path: str, route: Any, error: str) -> None:
    site.routes[path] = route
    site.routes["/loop-b"] = redirect("/loop-a")
    svc.sources.add(SourceIn(url=site.url("/news/festival")))
    before = svc.list_documents().total
    started = time.monotonic()
    result = svc.sources.add(SourceIn(url=site.url(path)))
    assert time.monotonic() - started < 15
    assert result.report.failed == 1 and result.report.added == 0
    assert error in (result.source.last_status or "") or error in (result.report.items[0].error or "")
    assert svc.list_documents().total == before


def test_a_feed_of_ten_thousand_items_reads_the_first_ones_and_says_so(tmp_path: Path, embedder: SentenceTransformerEmbedder, site: Site) -> None:
    items = [{"title": f"Tide table {i}", "link": f"/tides/{i}", "date": rfc822(DAY - dt.timedelta(minutes=i)),
              "content": f"<p>High tide at the Port Alder quay on day {i} is at {i % 12 + 1} o'clock.</p>" * 12} for i in range(10_000)]
    site.routes["/tides.xml"] = Page(rss(items), "application/rss+xml")
    svc = QAService(fast(tmp_path, fetch_max_items=40, fetch_max_bytes=50 * 1024 * 1024), embedder=embedder, load_llm=False)
    result = svc.sources.add(SourceIn(url=site.url("/tides.xml")))
    assert result.report.added == 40 and result.notes == ["10000 entries; only the first 40 were read (QA_FETCH_MAX_ITEMS)"]
    assert "Tide table 0" in titles(svc)
    svc.close()


def test_a_slow_server_times_out_and_the_api_stays_responsive(tmp_path: Path, embedder: SentenceTransformerEmbedder, site: Site) -> None:
    site.routes["/slow.xml"] = slow(0.2)
    s = fast(tmp_path, fetch_total_timeout_s=2.0, fetch_retries=0)
    svc = QAService(s, embedder=embedder, load_llm=False)
    with TestClient(create_app(s, service=svc)) as client:
        out: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: out.setdefault("r", client.post("/v1/sources", json={"url": site.url("/slow.xml")})))
        started = time.monotonic()
        worker.start()
        time.sleep(0.3)
        probe = time.monotonic()
        assert client.get("/v1/sources").status_code == 200 and client.get("/healthz").status_code == 200
        assert time.monotonic() - probe < 1.0
        worker.join(15)
        assert time.monotonic() - started < 6
        body = out["r"].json()
        assert out["r"].status_code == 201 and "took over 2 s" in body["last_status"]
    svc.close()


# safety: with the flag off, nothing private is reached, whatever the route to it
@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/x", "http://10.0.0.1/feed", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/", "http://localhost:9/",
     "http://[::ffff:127.0.0.1]/", "http://100.100.100.200/", "file:///etc/passwd", "gopher://example.org/", "http://user:pw@example.org/"],
)
def test_private_addresses_and_other_schemes_are_refused(tmp_path: Path, embedder: SentenceTransformerEmbedder, url: str) -> None:
    s = fast(tmp_path, fetch_allow_private=False)
    svc = QAService(s, embedder=embedder, load_llm=False)
    with TestClient(create_app(s, service=svc)) as client:
        r = client.post("/v1/sources", json={"url": url})
        assert r.status_code == 422 and r.json()["error"]["code"] == "url_not_allowed", r.text
        assert client.get("/v1/sources").json() == {"sources": []}
    svc.close()


@pytest.fixture
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.1 stands in for a public web server; every other private address keeps the rule."""
    real = fetch.is_public
    monkeypatch.setattr(fetch, "is_public", lambda a: a == "127.0.0.1" or real(a))


@pytest.mark.usefixtures("loopback_is_public")
@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/news/ferry", "http://10.1.2.3/", "http://169.254.169.254/latest/", "http://[::1]:{port}/"])
def test_a_redirect_to_a_private_address_is_refused(tmp_path: Path, site: Site, target: str) -> None:
    site.routes["/moved"] = redirect(target.format(port=site.port))
    fetcher = Fetcher(fast(tmp_path, fetch_allow_private=False, fetch_retries=0))
    assert fetcher.get(site.url("/news/ferry")).status == 200  # the "public" server is reachable
    with pytest.raises(Blocked, match="private"):
        fetcher.get(site.url("/moved"))
    fetcher.close()


@pytest.mark.usefixtures("loopback_is_public")
def test_dns_rebinding_between_check_and_connect_is_refused(tmp_path: Path, site: Site) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.7"]])  # public when checked, private when connecting
    guard = Guard(allow_private=False, resolver=lambda host, port: next(answers))
    fetcher = Fetcher(fast(tmp_path, fetch_allow_private=False, fetch_retries=0, fetch_respect_robots=False), guard=guard)
    with pytest.raises(Blocked, match="10.0.0.7"):
        fetcher.get(f"http://news.example:{site.port}/news/ferry")
    fetcher.close()


def test_fetch_limits_and_validators(tmp_path: Path, site: Site) -> None:
    fetcher = Fetcher(fast(tmp_path, fetch_max_bytes=2048))
    got = fetcher.get(site.url("/news/ferry"))
    assert got.status == 200 and got.etag == '"ferry-1"' and b"Marta Oyelaran" in got.body
    assert site.hits("/news/ferry")[-1]["user-agent"].startswith("qa-service/")
    assert "gzip" in site.hits("/news/ferry")[-1]["accept-encoding"]
    assert fetcher.get(site.url("/news/ferry"), etag='"ferry-1"').not_modified
    lm = fetcher.get(site.url("/news/library"), last_modified=rfc822(DAY))
    assert site.hits("/news/library")[-1]["if-modified-since"] == rfc822(DAY) and lm.status == 200
    site.routes["/big"] = Page(b"<p>" + b"y" * 10_000 + b"</p>")  # gzip makes it small on the wire; the cap counts decoded bytes
    with pytest.raises(FetchError, match="more than 2048 bytes"):
        fetcher.get(site.url("/big"))
    fetcher.close()


def test_transient_errors_are_retried(tmp_path: Path, site: Site) -> None:
    calls = {"n": 0}

    def flaky(req: Any) -> None:
        calls["n"] += 1
        page = Page(b"busy", "text/plain", 503) if calls["n"] == 1 else Page(b"<p>ok</p>")
        site.routes["/flaky"] = flaky  # keep the handler
        req._send(page)

    site.routes["/flaky"] = flaky
    fetcher = Fetcher(fast(tmp_path, fetch_retries=2))
    assert fetcher.get(site.url("/flaky")).status == 200 and calls["n"] == 2
    fetcher.close()


def test_canonical_urls() -> None:
    assert canonical_url("HTTP://News.Example.ORG:80/a/b?utm_source=x&id=3#top") == "http://news.example.org/a/b?id=3"
    assert canonical_url("https://example.org/a?b=2&a=1&fbclid=9") == "https://example.org/a?a=1&b=2"


def test_sources_api_and_cli(tmp_path: Path, embedder: SentenceTransformerEmbedder, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    s = fast(tmp_path, api_keys="k" * 20)
    svc = QAService(s, embedder=embedder, load_llm=False)
    key = {"X-API-Key": "k" * 20}
    with TestClient(create_app(s, service=svc)) as client:
        assert client.post("/v1/sources", json={"url": site.url("/rss.xml")}).status_code == 401
        r = client.post("/v1/sources", json={"url": site.url("/rss.xml"), "refresh_minutes": 30}, headers=key)
        assert r.status_code == 201, r.text
        src = r.json()
        assert set(src) == {"id", "url", "kind", "refresh_minutes", "created_at", "last_fetched_at", "last_status", "failures", "next_refresh_at", "documents",
                            "report", "notes"}
        assert (src["kind"], src["documents"], src["report"]["added"]) == ("feed", 2, 2)
        dup = client.post("/v1/sources", json={"url": site.url("/rss.xml")}, headers=key)
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"
        assert client.get(f"/v1/sources/{src['id']}").json()["documents"] == 2
        assert client.get("/v1/sources/src_nope").status_code == 404
        refreshed = client.post(f"/v1/sources/{src['id']}/refresh", headers=key).json()
        assert refreshed["source"]["last_status"] == "not modified"
        for bad in ({"url": "ftp://example.org/"}, {"url": site.url("/rss.xml"), "refresh_minutes": -1}, {"url": "x", "kind": "podcast"}, {}):
            r = client.post("/v1/sources", json=bad, headers=key)
            assert r.status_code == 422 and set(r.json()["error"]) == {"code", "message"}, r.text
        assert client.delete(f"/v1/sources/{src['id']}?delete_documents=true", headers=key).status_code == 204
        assert client.get("/v1/documents").json()["total"] == 0
    svc.close()

    from qa_service import cli

    monkeypatch.setattr(cli, "_overrides", {"data_dir": s.data_dir, "collection": s.collection})
    monkeypatch.setenv("QA_FETCH_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("QA_FETCH_HOST_DELAY_S", "0")
    runner = CliRunner()
    added = runner.invoke(cli.app, ["sources", "add", site.url("/rss.xml"), "--refresh-minutes", "5"])
    assert added.exit_code == 0 and "added 2" in added.output, added.output
    listed = runner.invoke(cli.app, ["sources", "list"])
    assert "feed\t2 docs\tevery 5 min\tok" in listed.output
    sid = listed.output.split("\t")[0]
    assert "not modified" in runner.invoke(cli.app, ["sources", "refresh", sid]).output
    assert runner.invoke(cli.app, ["sources", "refresh", "--due"]).exit_code == 0  # nothing due yet
    assert runner.invoke(cli.app, ["sources", "remove", sid]).exit_code == 0
    assert runner.invoke(cli.app, ["sources", "show", sid]).exit_code == 1


@pytest.mark.llm
def test_question_answered_from_a_fed_article_cites_its_url_and_date(tmp_path: Path, embedder: SentenceTransformerEmbedder, llm: Any, site: Site) -> None:
    s = fast(tmp_path)
    svc = QAService(s, embedder=embedder, llm=llm)
    with TestClient(create_app(s, service=svc)) as client:
        assert client.post("/v1/sources", json={"url": site.url("/rss.xml")}).status_code == 201
        r = client.post("/v1/ask", json={"question": "Who captained the first ferry crossing to Kestrel Island after the storm?"})
        body = r.json()
        assert r.status_code == 200 and "Oyelaran" in body["answer"], body
        cited = body["citations"][0]
        assert cited["url"] == site.url("/news/ferry") and cited["published_at"] == "2026-11-03T09:00:00Z"
    svc.close()
