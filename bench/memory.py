"""Server memory with the default models loaded: RSS of a real `qa-service serve`, split into the LLM's weights
(the resident pages of the mapped GGUF file, from /proc/PID/smaps) and everything else.

Seeds are ingested, then the server answers every seed question and 200 searches while RSS is sampled.

    python bench/memory.py --out bench/results/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/eval"


def split_rss(pid: int) -> tuple[float, float]:
    """(total RSS, RSS of mapped .gguf files) in MB."""
    total = gguf = 0
    current = ""
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            parts = line.split()
            if parts and "-" in parts[0] and len(parts) >= 5:
                current = parts[-1] if len(parts) >= 6 else ""
            elif parts and parts[0] == "Rss:":
                kb = int(parts[1])
                total += kb
                if current.endswith(".gguf"):
                    gguf += kb
    return total / 1024, gguf / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="QA_LLM_MODEL (default: the configured default)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/memory.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="qa-mem-"))
    env = {**os.environ, "QA_DATA_DIR": str(tmp / "store"), "QA_RATE_LIMIT_PER_MINUTE": "0", "ANONYMIZED_TELEMETRY": "False"}
    if args.model:
        env["QA_LLM_MODEL"] = args.model
    cli = [sys.executable, "-m", "qa_service.cli"]
    subprocess.run([*cli, "ingest", str(ROOT / "seeds")], env=env, check=True, capture_output=True)
    port = 18000 + os.getpid() % 1000
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise SystemExit("server did not start: " + (tmp / "serve.log").read_text()[-2000:])
            time.sleep(0.5)
        ready_s = time.perf_counter() - t0
        idle_total, idle_gguf = split_rss(proc.pid)
        peak = [idle_total, idle_gguf]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                total, gguf = split_rss(proc.pid)
                if total > peak[0]:
                    peak[:] = [total, gguf]
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        questions = [json.loads(line)["question"] for line in (SHARED / "seed/questions.jsonl").read_text().splitlines() if line.strip()]
        dev = [json.loads(line)["question"] for line in (SHARED / "qamr-wikinews/dev.jsonl").read_text().splitlines()][:200]
        with httpx.Client(timeout=300) as c:
            for q in questions:
                assert c.post(f"{url}/v1/ask", json={"question": q}).status_code == 200
            for q in dev:
                assert c.post(f"{url}/v1/search", json={"query": q}).status_code == 200
        stop.set()
        sampler.join()
        end_total, end_gguf = split_rss(proc.pid)
        children = sum(ch.memory_info().rss for ch in psutil.Process(proc.pid).children(recursive=True)) / 2**20
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()

    def row(total: float, gguf: float) -> dict[str, float]:
        return {"rss_mb": round(total), "llm_weights_mb": round(gguf), "rss_besides_llm_weights_mb": round(total - gguf)}

    out = {
        "machine": {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "model": args.model or "default",
        "ready_s": round(ready_s, 1),
        "asks": len(questions),
        "searches": len(dev),
        "idle": row(idle_total, idle_gguf),
        "peak": row(*peak),
        "end": row(end_total, end_gguf),
        "child_processes_rss_mb": round(children),
        "target_besides_llm_weights_mb": 1536,
    }
    print(json.dumps(out, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
