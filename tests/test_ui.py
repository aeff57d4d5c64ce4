"""The web chat page in a real headless Chromium against a real running server (uvicorn, real models, seeds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from qa_service.api.app import create_app
from qa_service.config import Settings
from qa_service.ingest.loaders import load_paths
from qa_service.service import QAService

from .conftest import ROOT, SEEDS, free_port

pytestmark = [pytest.mark.browser, pytest.mark.llm]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "ui"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api")


def ensure_chromium() -> str:
    if not Path(CHROMIUM).exists():
        apt = shutil.which("apt-get")
        assert apt, "no /usr/bin/chromium and no apt-get to install it"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run([apt, "install", "-y", "-q", "chromium"], env=env, capture_output=True).returncode != 0:
            subprocess.run([apt, "update", "-q"], env=env, capture_output=True, check=True)
            subprocess.run([apt, "install", "-y", "-q", "chromium"], env=env, capture_output=True, check=True)
    assert Path(CHROMIUM).exists()
    return CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder, llm) -> Iterator[str]:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path_factory.mktemp("ui") / "store", collection="ui-news", fetch_allow_private=True, fetch_host_delay_s=0)
    svc = QAService(s, embedder=embedder, llm=llm)
    svc.ingest(load_paths([SEEDS]))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(s, service=svc), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{url}/healthz").status_code == 200
    yield url
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    exe = ensure_chromium()
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]
    pg.goto(server)
    pg.wait_for_selector("#status.ready", timeout=30_000)
    yield pg
    ctx.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def ask(page, question: str):  # type: ignore[no-untyped-def]
    """Type and send a question; wait until the streamed answer is final; return the answer element."""
    before = page.locator("li.msg.assistant, li.msg.error").count()
    page.fill("#question", question)
    page.click("#send")
    page.wait_for_function(
        "n => document.querySelectorAll('li.msg.assistant:not(.streaming), li.msg.error').length > n", arg=before, timeout=120_000
    )
    return page.locator("li.msg.assistant, li.msg.error").nth(before)


def test_page_has_strict_csp(server: str) -> None:
    r = httpx.get(server + "/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"


def test_ask_streams_answer_with_chip_then_follow_up(page) -> None:  # type: ignore[no-untyped-def]
    seen_streaming = page.evaluate_handle("""() => {
        const seen = {streaming: false};
        new MutationObserver(() => { if (document.querySelector('li.msg.streaming .text')?.textContent) seen.streaming = true; })
            .observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
        return seen; }""")
    answer = ask(page, "Which country reportedly agreed to mediate between the US and Iran?")
    assert "Russia" in answer.inner_text()
    assert seen_streaming.evaluate("s => s.streaming"), "tokens should appear before the answer is final"
    chip = answer.locator("button.chip").first
    assert chip.is_visible()
    chip.click()
    panel = page.locator("#passage")
    panel.wait_for(state="visible")
    assert "Russia" in panel.locator("#passage-text").inner_text()
    assert panel.locator("#passage-title").inner_text().strip()
    assert panel.locator("mark").count() == 1, "the supporting quote is highlighted"
    shot(page, "answer-with-passage")

    follow = ask(page, "And where did the envoys meet?")
    assert "Riyadh" in follow.inner_text()
    assert "Answered as:" in follow.inner_text()
    assert page.locator("li.msg.user").count() == 2
    assert not page.console_errors  # type: ignore[attr-defined]


def test_refusal_is_shown_distinctly(page) -> None:  # type: ignore[no-untyped-def]
    answer = ask(page, "What is the population of Tehran?")
    assert "refused" in (answer.get_attribute("class") or "")
    assert "Not in the archive" in answer.inner_text()
    assert answer.locator("button.chip").count() == 0


def test_upload_then_ask_then_delete(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "harbor-lights.md"
    doc.write_text(
        "---\ntitle: Harbor Lights Festival draws record crowd\nsource: Elsin Gazette\npublished_at: 2026-11-20\n---\n"
        "The Harbor Lights Festival in Port Elsin drew 12,400 visitors on Saturday, organisers said. "
        "The festival's lantern parade was led by the fishing cooperative's oldest boat, the Marguerite.\n"
    )
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"title": "ok"\n')
    page.set_input_files("#files", [str(doc), str(bad)])
    page.click("#upload button[type=submit]")
    report = page.locator("#ingest-report")
    report.filter(has_text="added 1").wait_for(timeout=30_000)
    assert "broken.jsonl:1" in report.inner_text() and "failed 1" in report.inner_text()
    page.locator("#doc-list li", has_text="Harbor Lights Festival").wait_for()
    assert "Elsin Gazette" in [o.get_attribute("value") for o in page.locator("#f-source option").all()]

    answer = ask(page, "How many visitors did the Harbor Lights Festival draw?")
    assert "12,400" in answer.inner_text()
    assert "2026-11-20" in answer.locator(".sources").inner_text()  # citations carry their article's date

    page.click(".filters summary")
    page.fill("#f-asof", "2026-11-01")  # asked before the festival: its article is not yet published
    assert "as of: 2026-11-01" in page.locator("#filter-summary").inner_text()
    before = ask(page, "How many visitors did the Harbor Lights Festival draw?")
    assert "12,400" not in before.inner_text()
    page.click("#f-clear")

    item = page.locator("#doc-list li", has_text="Harbor Lights Festival")
    item.locator("button").click()
    item.locator("button.confirm").click()
    page.locator("#doc-list li", has_text="Harbor Lights Festival").wait_for(state="detached")
    assert "Deleted" in report.inner_text()


def test_source_filter_applies_to_next_question(page) -> None:  # type: ignore[no-untyped-def]
    page.click(".filters summary")
    sources = [o.get_attribute("value") for o in page.locator("#f-source option").all()]
    other = next(s for s in sources if s and "Wikinews" in s)
    page.select_option("#f-source", other)
    answer = ask(page, "Which country reportedly agreed to mediate between the US and Iran?")
    assert "Russia" not in answer.inner_text(), "the seed article is outside the chosen source"


def test_script_payloads_render_inert(page, server: str) -> None:  # type: ignore[no-untyped-def]
    payload = '<script>window.__pwned = 1; alert("script")</script> <img src=x onerror="window.__pwned = 2; alert(\'img\')">'
    r = httpx.post(server + "/v1/documents", json={"documents": [{
        "id": "xss-test", "title": "Quillon Bay ferry <img src=x onerror=alert('title')>", "source": "Test Wire",
        "text": f"The Quillon Bay ferry service resumed on Monday after repairs to its pier. {payload} "
                "The ferry carries about 300 passengers a day between Quillon Bay and Marsh Island."}]})
    assert r.status_code == 200, r.text
    page.reload()
    page.wait_for_selector("#status.ready")
    page.locator("#doc-list li", has_text="Quillon Bay ferry").wait_for()
    answer = ask(page, "How many passengers a day does the Quillon Bay ferry carry?")
    assert "300" in answer.inner_text()
    answer.locator("button.chip").first.click()
    passage = page.locator("#passage-text")
    passage.wait_for(state="visible")
    assert "<script>" in passage.inner_text(), "the payload is shown as text"
    assert page.locator("#passage-text img, #passage-text script, #doc-list img, #log img").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert page.dialogs == []  # type: ignore[attr-defined]
    shot(page, "xss-inert")
    httpx.delete(server + "/v1/documents/xss-test")


def test_phone_width_layout(browser, server: str) -> None:  # type: ignore[no-untyped-def]
    ctx = browser.new_context(viewport={"width": 390, "height": 800}, is_mobile=True)
    pg = ctx.new_page()
    pg.goto(server)
    pg.wait_for_selector("#status.ready")
    assert not pg.locator("#docs").is_visible(), "the documents panel folds away on a phone"
    pg.click("#toggle-docs")
    assert pg.locator("#docs").is_visible()
    assert pg.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"), "no horizontal scroll"
    shot(pg, "phone")
    ctx.close()


def test_follow_a_feed_refresh_and_remove_it(page) -> None:  # type: ignore[no-untyped-def]
    from .news_fixtures import FERRY, LIBRARY
    from .site import Page, Site, article_html, rss

    site = Site()
    site.routes["/news/ferry"] = Page(article_html(*FERRY, published="2026-11-03T09:00:00Z"))
    site.routes["/news/library"] = Page(article_html(*LIBRARY))
    items = [{"title": FERRY[0], "link": "/news/ferry", "date": "Tue, 03 Nov 2026 09:00:00 GMT"}, {"title": LIBRARY[0], "link": "/news/library"}]
    site.routes["/rss.xml"] = Page(rss(items), "application/rss+xml", etag='"v1"')
    with site.running():
        page.click("#sources summary")
        page.fill("#s-url", site.url("/rss.xml"))
        page.fill("#s-minutes", "30")
        page.click("#add-source button[type=submit]")
        report = page.locator("#ingest-report")
        report.filter(has_text="added 2").wait_for(timeout=60_000)
        assert "feed: ok" in report.inner_text()
        item = page.locator("#source-list li", has_text="/rss.xml")
        item.filter(has_text="2 documents").wait_for()
        assert "every 30 min" in item.inner_text()
        page.locator("#doc-list li", has_text=FERRY[0]).wait_for()
        item.get_by_role("button", name="Refresh").click()
        item.filter(has_text="not modified").wait_for(timeout=30_000)
        shot(page, "sources")
        item.get_by_role("button", name="Remove").click()
        item.locator("button.confirm").click()
        page.locator("#source-list li", has_text="/rss.xml").wait_for(state="detached")
        assert page.locator("#doc-list li", has_text=FERRY[0]).count() == 1  # its documents stay
        page.fill("#s-url", "http://example.invalid/feed")
        page.click("#add-source button[type=submit]")
        report.filter(has_text="Could not follow: cannot resolve example.invalid").wait_for(timeout=30_000)
    # the 422 is logged by the browser as a failed resource; no script error
    assert [e for e in page.console_errors if "Failed to load resource" not in e] == []  # type: ignore[attr-defined]


def test_collection_picker_switches_the_archive(page, server: str) -> None:  # type: ignore[no-untyped-def]
    assert httpx.post(f"{server}/v1/collections", json={"name": "sports-desk"}).status_code == 201
    httpx.post(f"{server}/v1/documents", json={"collection": "sports-desk", "documents": [
        {"id": "derby", "title": "Harbour derby ends level", "text": "Port Alder and Kestrel Island drew 2-2 in the harbour derby on Saturday."}]})
    page.reload()
    page.wait_for_selector("#status.ready")
    page.locator("#collection option", has_text="sports-desk (1)").wait_for(state="attached")
    page.select_option("#collection", "sports-desk")
    page.locator("#doc-list li", has_text="Harbour derby ends level").wait_for()
    assert page.locator("#doc-list li").count() == 1  # the seeds live in the default collection
    assert "1 documents" in page.locator("#doc-count").inner_text()
    page.select_option("#collection", "")
    page.locator("#doc-list li", has_text="Harbour derby ends level").wait_for(state="detached")
