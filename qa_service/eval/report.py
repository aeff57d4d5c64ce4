"""report.html with PNG plots: metrics per question type, latency histogram, the worst misses. Static, no scripts."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

RETRIEVAL = ["hit1", "hit5", "hit10", "mrr10", "passage_hit5", "answer_hit5"]
ANSWERS = ["answer_in_evidence", "em", "f1", "contains", "citation_precision", "refusal_correct"]


def _bar_chart(summary: dict[str, Any], keys: list[str], title: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = [t for t, agg in summary["by_qtype"].items() if any(k in agg for k in keys)]
    present = [k for k in keys if any(k in summary["by_qtype"][t] for t in types)]
    if not types or not present:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(types) + 3), 3.8), dpi=110)
    width = 0.8 / len(present)
    for i, key in enumerate(present):
        values = [summary["by_qtype"][t].get(key, 0) for t in types]
        ax.bar([x + i * width for x in range(len(types))], values, width, label=key)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(types))], [f"{t}\n(n={summary['by_qtype'][t]['n']})" for t in types], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=len(present), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _latency_histogram(rows: list[dict[str, Any]], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: [r[k] for r in rows if k in r] for k in ("search_ms", "total_ms")}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.4), dpi=110)
    axes = axes if len(series) > 1 else [axes]
    for ax, (key, values) in zip(axes, series.items(), strict=True):
        ax.hist(values, bins=30, color="#2457d6", alpha=0.85)
        ax.set_title(f"{key.replace('_ms', '')} latency (ms), n={len(values)}")
        ax.set_xlabel("ms")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _table(summary: dict[str, Any]) -> str:
    keys = [k for k in RETRIEVAL + ANSWERS + ["correct", "search_ms_p50", "total_ms_p50", "total_ms_p95"] if k in summary["overall"]]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["question type", "n", *keys])
    rows = []
    for name, agg in [("overall", summary["overall"]), *summary["by_qtype"].items()]:
        cells = "".join(f"<td>{agg[k]:.3f}</td>" if isinstance(agg.get(k), float) and not k.endswith("_p50") and not k.endswith("_p95")
                        else f"<td>{agg.get(k, '')}</td>" for k in keys)
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{agg['n']}</td>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _misses(rows: list[dict[str, Any]], limit: int = 25) -> str:
    missed = [r for r in rows if r.get("answerable") and (r.get("hit5") == 0.0 or r.get("correct") == 0.0)][:limit]
    if not missed:
        return "<p>No misses.</p>"
    items = []
    for r in missed:
        bits = [f"rank {r.get('rank')}" if "rank" in r else "", f"answer: {r['answer']}" if "answer" in r else ""]
        items.append(f"<li><b>{html.escape(str(r.get('id')))}</b> [{html.escape(r['qtype'])}] {html.escape(r['question'])}"
                     f"<br><small>{html.escape(' · '.join(b for b in bits if b))}</small></li>")
    return f"<ol>{''.join(items)}</ol>"


def write_report(out: Path, summary: dict[str, Any], rows: list[dict[str, Any]], deltas: list[tuple[str, float, float]] | None = None) -> Path:
    plots = []
    if _bar_chart(summary, RETRIEVAL, "Retrieval per question type", out / "retrieval_by_qtype.png"):
        plots.append("retrieval_by_qtype.png")
    if _bar_chart(summary, ANSWERS + ["correct"], "Answers per question type", out / "answers_by_qtype.png"):
        plots.append("answers_by_qtype.png")
    if _latency_histogram(rows, out / "latency.png"):
        plots.append("latency.png")
    delta_html = ""
    if deltas:
        cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{b:.3f}</td><td>{v:.3f}</td><td class='{'up' if v >= b else 'down'}'>{v - b:+.3f}</td></tr>"
                        for k, b, v in deltas)
        delta_html = f"<h2>Against the baseline</h2><table><tr><th>metric</th><th>baseline</th><th>this run</th><th>delta</th></tr>{cells}</table>"
    config = html.escape(json.dumps(summary.get("config", {}), indent=2))
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>qa-service eval report</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self'; style-src 'unsafe-inline'">
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1c2430}}
table{{border-collapse:collapse;margin:1em 0;font-size:.9em}}td,th{{border:1px solid #e2e6ec;padding:.3em .6em;text-align:right}}
th{{background:#f6f7f9;text-align:left}}img{{max-width:100%;border:1px solid #e2e6ec;margin:.5em 0}}.up{{color:#12804a}}.down{{color:#b42318}}
pre{{background:#f6f7f9;padding:.8em;overflow:auto}}</style></head><body>
<h1>Evaluation report</h1><p>{summary['overall']['n']} questions · {html.escape(str(summary.get('config', {}).get('questions', '')))}</p>
{_table(summary)}{delta_html}{''.join(f'<img src="{p}" alt="{p}">' for p in plots)}
<h2>Misses (first 25)</h2>{_misses(rows)}<h2>Configuration</h2><pre>{config}</pre></body></html>"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
