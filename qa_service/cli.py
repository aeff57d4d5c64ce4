"""The qa-service command line: ingest, ask, serve, documents, eval. Flags override QA_ settings."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from qa_service.config import Settings, offline_environment
from qa_service.errors import QAError
from qa_service.reader.cli import reader_app
from qa_service.schemas import Mode

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Grounded, cited question answering over news articles.")
docs_app = typer.Typer(no_args_is_help=True, help="List, show and delete stored documents.")
app.add_typer(docs_app, name="documents")

_overrides: dict[str, Any] = {}


def settings() -> Settings:
    try:
        return Settings(**_overrides)
    except Exception as exc:  # pydantic's message names the bad field
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


@app.callback()
def main(
    data_dir: Annotated[Path | None, typer.Option(help="Chroma directory (QA_DATA_DIR)")] = None,
    collection: Annotated[str | None, typer.Option(help="collection name (QA_COLLECTION)")] = None,
    chroma_url: Annotated[str | None, typer.Option(help="Chroma server URL (QA_CHROMA_URL)")] = None,
    llm_backend: Annotated[str | None, typer.Option(help="local | openai (QA_LLM_BACKEND)")] = None,
    llm_model: Annotated[str | None, typer.Option(help="packaged model name or .gguf path (QA_LLM_MODEL)")] = None,
    top_k: Annotated[int | None, typer.Option(help="passages per answer (QA_TOP_K)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    for key, value in dict(data_dir=data_dir, collection=collection, chroma_url=chroma_url, llm_backend=llm_backend, llm_model=llm_model, top_k=top_k).items():
        if value is not None:
            _overrides[key] = value
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    offline_environment()


def _service(load_llm: bool) -> Any:
    from qa_service.service import QAService

    try:
        return QAService(settings(), load_llm=load_llm)
    except QAError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(1) from None


def _fail(exc: QAError) -> None:
    typer.secho(f"error ({exc.code}): {exc.message}", fg="red", err=True)
    raise typer.Exit(1)


@app.command()
def ingest(paths: Annotated[list[Path], typer.Argument(help="files or directories (recursive)")], as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Ingest .txt .md .json .jsonl .html files; unchanged documents are skipped."""
    from tqdm import tqdm

    from qa_service.ingest.loaders import Loaded, iter_files, load_paths

    svc = _service(load_llm=False)
    files = list(iter_files(paths))
    with tqdm(total=len(files), unit="file", disable=as_json or len(files) < 2, file=sys.stderr) as bar:
        def progress_files() -> Iterator[Loaded]:
            for f in files:
                yield from load_paths([f])
                bar.update(1)

        report = svc.ingest(progress_files())
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print_failures(report)
        typer.echo(f"{_counts(report)}; chunks written {report.chunks_written}")
    raise typer.Exit(1 if report.failed and not (report.added or report.updated or report.unchanged) else 0)


def _print_failures(report: Any) -> None:
    for item in report.items:
        if item.status == "failed":
            typer.secho(f"failed  {item.origin}: {item.error}", fg="yellow", err=True)


def _counts(report: Any) -> str:
    return f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, failed {report.failed}"


def _filters(source: str | None, doc_id: str | None, after: str | None, before: str | None) -> Any:
    from qa_service.schemas import Filters

    if not any((source, doc_id, after, before)):
        return None
    def day(value: str | None, flag: str) -> dt.date | None:
        try:
            return dt.date.fromisoformat(value) if value else None
        except ValueError:
            raise typer.BadParameter(f"{flag} expects an ISO date (YYYY-MM-DD), got {value!r}") from None

    return Filters(source=source, doc_id=doc_id, published_after=day(after, "--after"), published_before=day(before, "--before"))


AS_OF_HELP = "the moment the question is asked (ISO date or datetime): later articles are hidden, 'this week' counts from it"


@app.command()
def ask(
    question: str,
    as_json: Annotated[bool, typer.Option("--json", help="print the full JSON answer")] = False,
    source: Annotated[str | None, typer.Option()] = None,
    doc_id: Annotated[str | None, typer.Option()] = None,
    published_after: Annotated[str | None, typer.Option()] = None,
    published_before: Annotated[str | None, typer.Option()] = None,
    k: Annotated[int | None, typer.Option("--k", help="passages to retrieve")] = None,
    mode: Annotated[Mode | None, typer.Option(help="generative (LLM from the reader's evidence) or extractive (the reader alone)")] = None,
    as_of: Annotated[str | None, typer.Option(help=AS_OF_HELP)] = None,
) -> None:
    """Answer a question from the stored articles, streaming to the terminal."""
    svc = _service(load_llm=(mode or settings().answer_mode) == "generative")
    final = None
    try:
        for ev in svc.ask_stream(question, k, _filters(source, doc_id, published_after, published_before), mode=mode, as_of=as_of):
            if ev.event == "token" and not as_json:
                typer.echo(ev.data, nl=False)
            elif ev.event == "retry" and not as_json:
                typer.secho(f"\n(not kept: {ev.data}; asking again over more of the passages)", dim=True)
            elif ev.event == "done":
                final = ev.data
    except QAError as exc:
        _fail(exc)
    assert final is not None
    if as_json:
        typer.echo(final.model_dump_json(indent=2))
        return
    typer.echo("")
    if final.refused:
        typer.secho("(refused: the passages do not hold the answer)", fg="yellow")
    else:
        conf = f" (confidence {final.confidence:.2f})" if final.confidence is not None else ""
        typer.secho(f"short answer: {final.short_answer}{conf}", bold=True)
        for c in final.citations:
            quote = f' — "{c.quote.text[:160]}"' if c.quote else ""
            typer.echo(f"[{c.n}] {c.title} ({c.doc_id}){quote}")
    t = final.timings
    typer.secho(f"retrieve {t.retrieve_ms:.0f} ms, generate {t.generate_ms:.0f} ms, total {t.total_ms:.0f} ms", dim=True)


@app.command()
def search(
    query: str,
    k: Annotated[int | None, typer.Option("--k")] = None,
    rerank: Annotated[bool, typer.Option("--rerank", help="reorder with the trained reader")] = False,
    as_of: Annotated[str | None, typer.Option(help=AS_OF_HELP)] = None,
) -> None:
    """Retrieval only (no LLM), as JSON."""
    svc = _service(load_llm=False)
    try:
        results = svc.search(query, k, rerank=rerank, as_of=as_of)
    except QAError as exc:
        _fail(exc)
    typer.echo(json.dumps([r.model_dump() for r in results], indent=2, ensure_ascii=False))


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes; more than 1 needs a Chroma server (QA_CHROMA_URL)")] = 1,
) -> None:
    """Serve the HTTP API (and web UI at /). Never ingests anything by itself."""
    import uvicorn

    s = settings()
    access_log = s.log_format != "json"  # the JSON request log replaces uvicorn's access lines
    if workers == 1:
        from qa_service.api.app import create_app

        uvicorn.run(create_app(s), host=host, port=port, log_level="info", access_log=access_log)
        return
    if not s.chroma_url:
        typer.secho("--workers > 1 needs a Chroma server (QA_CHROMA_URL): embedded Chroma allows one process per directory", fg="red", err=True)
        raise typer.Exit(2)
    # each worker builds its own app from the environment; writes from all of them serialise on the writer lock
    for key, value in _overrides.items():
        os.environ[f"QA_{key.upper()}"] = str(value)
    if s.metrics != "off" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        # every worker writes its metrics to files here; /metrics in any worker sums them
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="qa-metrics-")
    uvicorn.run("qa_service.api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info", access_log=access_log)


@app.command("config")
def config_cmd(markdown: Annotated[bool, typer.Option("--markdown", help="the settings table of docs/configuration.md")] = False) -> None:
    """Show the effective settings (environment, .env and flags applied) as JSON."""
    from qa_service.config import settings_table

    if markdown:
        typer.echo(settings_table(), nl=False)
        return
    typer.echo(settings().model_dump_json(indent=2, exclude={"api_keys", "openai_api_key"}))


@docs_app.command("list")
def documents_list(offset: int = 0, limit: int = 50) -> None:
    svc = _service(load_llm=False)
    page = svc.list_documents(offset, limit)
    for d in page.documents:
        typer.echo(f"{d.doc_id}\t{d.chunks} chunks\t{d.source or '-'}\t{d.title}")
    typer.echo(f"{len(page.documents)} of {page.total} documents", err=True)


@docs_app.command("show")
def documents_show(doc_id: str) -> None:
    svc = _service(load_llm=False)
    try:
        typer.echo(svc.get_document(doc_id).model_dump_json(indent=2))
    except QAError as exc:
        _fail(exc)


@docs_app.command("delete")
def documents_delete(doc_id: str) -> None:
    svc = _service(load_llm=False)
    try:
        svc.delete(doc_id)
    except QAError as exc:
        _fail(exc)
    typer.echo(f"deleted {doc_id}")


def _with_collection(collection: str | None) -> None:
    if collection:
        _overrides["collection"] = collection


@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="the archive to write (gzip JSON lines)")],
    collection: Annotated[str | None, typer.Option(help="the collection to export (default QA_COLLECTION)")] = None,
) -> None:
    """Back up a collection's documents and metadata, with a manifest (counts, digest, model names)."""
    from qa_service.backup import export

    _with_collection(collection)
    manifest = export(_service(load_llm=False), out)
    typer.echo(f"exported {manifest['documents']} documents ({manifest['chunks']} chunks) of {manifest['collection']} to {out}")


@app.command("import")
def import_cmd(
    archive: Annotated[Path, typer.Argument(help="a file written by qa-service export")],
    collection: Annotated[str | None, typer.Option(help="the collection to restore into (default QA_COLLECTION)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore an export: the whole file is checked first (a truncated or changed file writes nothing); idempotent."""
    from qa_service.backup import restore

    _with_collection(collection)
    svc = _service(load_llm=False)
    try:
        manifest, report, notes = restore(svc, archive)
    except QAError as exc:
        _fail(exc)
    for note in notes:
        typer.secho(f"note: {note}", fg="yellow", err=True)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(f"restored {manifest['documents']} documents into {svc.settings.collection}: {_counts(report)}; chunks written {report.chunks_written}")
    raise typer.Exit(1 if report.failed else 0)


sources_app = typer.Typer(no_args_is_help=True, help="Follow news feeds, sitemaps and pages: add, list, show, refresh, remove.")
app.add_typer(sources_app, name="sources")


def _print_refresh(result: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    s = result.source
    _print_failures(result.report)
    for note in result.notes:
        typer.secho(f"note    {note}", err=True)
    typer.echo(f"{s.id}\t{s.kind or '?'}\t{s.last_status}\t{_counts(result.report)}\t{s.url}")


@sources_app.command("add")
def sources_add(
    url: str,
    refresh_minutes: Annotated[int, typer.Option(help="minutes between refreshes; 0: only when asked")] = 60,
    kind: Annotated[str | None, typer.Option(help="feed | sitemap | page (detected when left out)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Follow a URL and fetch it once."""
    from qa_service.schemas import SourceIn

    svc = _service(load_llm=False)
    try:
        _print_refresh(svc.sources.add(SourceIn.model_validate({"url": url, "refresh_minutes": refresh_minutes, "kind": kind})), as_json)
    except QAError as exc:
        _fail(exc)
    except ValueError as exc:  # pydantic: a bad kind or interval
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


@sources_app.command("list")
def sources_list() -> None:
    svc = _service(load_llm=False)
    for s in svc.sources.all():
        typer.echo(f"{s.id}\t{s.kind or '?'}\t{s.documents} docs\tevery {s.refresh_minutes} min\t{s.last_status or 'never fetched'}\t{s.url}")


@sources_app.command("show")
def sources_show(source_id: str) -> None:
    svc = _service(load_llm=False)
    try:
        typer.echo(svc.sources.get(source_id).model_dump_json(indent=2))
    except QAError as exc:
        _fail(exc)


@sources_app.command("refresh")
def sources_refresh(
    source_id: Annotated[str | None, typer.Argument(help="a source id; leave out with --due")] = None,
    due: Annotated[bool, typer.Option("--due", help="refresh every source that is due (for cron)")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fetch one source now, or every due one."""
    if (source_id is None) == (not due):
        typer.secho("error: name a source id or pass --due", fg="red", err=True)
        raise typer.Exit(2)
    svc = _service(load_llm=False)
    try:
        results = svc.sources.refresh_due() if due else [svc.sources.refresh(source_id)]
    except QAError as exc:
        _fail(exc)
    for result in results:
        _print_refresh(result, as_json)
    raise typer.Exit(1 if any(r.source.failures for r in results) else 0)


@sources_app.command("remove")
def sources_remove(
    source_id: str, delete_documents: Annotated[bool, typer.Option("--delete-documents", help="also delete the documents only it brought in")] = False
) -> None:
    svc = _service(load_llm=False)
    try:
        n = svc.sources.remove(source_id, delete_documents=delete_documents)
    except QAError as exc:
        _fail(exc)
    typer.echo(f"removed {source_id}" + (f" and {n} documents" if delete_documents else ""))


@app.command("eval")
def eval_cmd(
    questions: Annotated[Path, typer.Option(help="questions JSONL")],
    corpus: Annotated[list[Path] | None, typer.Option(help="corpus file or folder, ingested into a fresh collection")] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("eval/runs/latest"),
    search_only: Annotated[bool, typer.Option("--search-only", help="retrieval metrics only, no LLM")] = False,
    evidence: Annotated[
        bool,
        typer.Option("--evidence", help="with --search-only: also whether the gold answer is in the passages the LLM would read first (it is not asked)"),
    ] = False,
    mode: Annotated[Mode | None, typer.Option(help="answer mode: generative or extractive (default QA_ANSWER_MODE)")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="empty the corpus collection first (else re-ingest is a no-op for stored articles)")] = False,
    as_of: Annotated[bool, typer.Option("--as-of/--no-as-of", help="ask each question as of its question_date, when it has one")] = True,
    limit: Annotated[int | None, typer.Option(help="first N questions")] = None,
    baseline: Annotated[Path | None, typer.Option(help="summary.json to compare against")] = None,
) -> None:
    """Score retrieval and answers on a question set; writes summary.json, results.jsonl and report.html (with PNG plots)."""
    from qa_service.eval.report import write_report
    from qa_service.eval.runner import compare, run

    if evidence and not search_only:
        raise typer.BadParameter("--evidence goes with --search-only (an answered run records the evidence anyway)", param_hint="--evidence")
    summary = run(settings(), questions, corpus=corpus, out=out, search_only=search_only, limit=limit, mode=mode, fresh=fresh, as_of=as_of, evidence=evidence)
    typer.echo(json.dumps(summary["overall"], indent=2))
    deltas = None
    if baseline is not None:
        if not baseline.exists():
            typer.secho(f"baseline {baseline} not found; no comparison", fg="yellow", err=True)
        else:
            deltas = compare(summary, json.loads(baseline.read_text()))
            for key, base, now in deltas:
                typer.echo(f"{key:>22}: {base:8.4f} -> {now:8.4f} ({now - base:+.4f})")
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    report = write_report(out, summary, rows, deltas)
    typer.echo(f"wrote {out}/summary.json, results.jsonl and {report}", err=True)


app.add_typer(reader_app, name="reader")
models_app = typer.Typer(no_args_is_help=True, help="Packaged models.")
app.add_typer(models_app, name="models")


@models_app.command("prepare")
def models_prepare() -> None:
    """Assemble and verify the packaged GGUF models and export the encoder to ONNX (run by make install, so the
    first start is not slowed)."""
    from qa_service.embedding import make_embedder, onnx_path
    from qa_service.models import GGUF_MODELS, resolve_gguf

    s = settings()
    backend = make_embedder(s).backend  # exports (and quantises) the model when the cache does not hold it yet
    if backend != "torch":
        typer.echo(f"{s.embedding_model}: {onnx_path(s.embedding_model, s.model_cache_dir, int8=backend == 'onnx-int8')}")
    for name in GGUF_MODELS:
        try:
            path = resolve_gguf(name, s.model_cache_dir)
        except QAError as exc:
            typer.secho(f"{name}: {exc.message}", fg="yellow", err=True)
            continue
        typer.echo(f"{name}: {path} ({path.stat().st_size / 1e6:.0f} MB)")


@models_app.command("list")
def models_list() -> None:
    from qa_service.models import GGUF_MODELS

    for m in GGUF_MODELS.values():
        typer.echo(f"{m.name}\t{m.description}")


if __name__ == "__main__":
    app()
