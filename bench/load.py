"""Bounded load test on loopback: N concurrent users on /v1/search and /v1/ask for a fixed time.

Starts its own server (`qa-service serve`, seeds ingested into a temporary store, a small LLM), one API key per
user so the per-key rate limit applies per user, then prints p50/p95 per endpoint, counts by status and the
server's RSS growth, and writes JSON.

    python bench/load.py --users 50 --duration 120 --out bench/results/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psutil

from qa_service.eval.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [json.loads(line)["question"] for line in (ROOT.parent / "shared/eval/seed/questions.jsonl").read_text().splitlines() if line.strip()]
QUERIES = ["Russia mediation US Iran", "Riyadh meeting envoys", "Tunisia constitution", "Indiana amendment", "Nikki Allan", "Kremlin Peskov"]



async def user(i: int, base: str, key: str, stop: float, ask_share: float, log: list[tuple[str, int, float]]) -> None:
    rng = random.Random(i)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=120) as client:
        while time.monotonic() < stop:
            ask = rng.random() < ask_share
            t = time.perf_counter()
            try:
                if ask:
                    r = await client.post("/v1/ask", json={"question": rng.choice(QUESTIONS)})
                else:
                    r = await client.post("/v1/search", json={"query": rng.choice(QUERIES + QUESTIONS), "top_k": 5})
                status = r.status_code
                if status in (429, 503):
                    await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 2.0))
            except httpx.HTTPError:
                status = 0
            log.append(("ask" if ask else "search", status, (time.perf_counter() - t) * 1000))


async def sample_rss(proc: psutil.Process, stop: float, samples: list[float]) -> None:
    while time.monotonic() < stop:
        samples.append(proc.memory_info().rss / 2**20)
        await asyncio.sleep(1)


async def run(base: str, keys: list[str], duration: float, warmup: float, ask_share: float, server: psutil.Process) -> dict[str, object]:
    log: list[tuple[str, int, float]] = []
    rss: list[float] = []
    # warm-up under the same load, not counted: thread pools, allocator arenas and lazy indexes fill up first
    rss_before_warmup = server.memory_info().rss / 2**20
    warm_stop = time.monotonic() + warmup
    await asyncio.gather(*(user(i, base, k, warm_stop, ask_share, []) for i, k in enumerate(keys)))
    rss_start = server.memory_info().rss / 2**20
    stop = time.monotonic() + duration
    await asyncio.gather(sample_rss(server, stop, rss), *(user(i, base, k, stop, ask_share, log) for i, k in enumerate(keys)))
    rss_end = server.memory_info().rss / 2**20
    by: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for endpoint, status, ms in log:
        statuses[endpoint][status] += 1
        if status == 200:
            by[endpoint].append(ms)
    unintended = sum(n for counts in statuses.values() for s, n in counts.items() if s not in (200, 429, 503))
    return {
        "users": len(keys), "duration_s": duration, "ask_share": ask_share, "requests": len(log),
        "throughput_rps": round(len(log) / duration, 1),
        "latency_ms": {e: {"p50": percentile(v, 50), "p95": percentile(v, 95), "ok": len(v), "mean": round(statistics.mean(v), 1) if v else None} for e, v in by.items()},
        "statuses": {e: dict(sorted(c.items())) for e, c in statuses.items()},
        "unintended_errors": unintended,
        "warmup_s": warmup,
        "rss_samples_mb": [round(x) for x in rss[:: max(1, len(rss) // 12)]],
        "rss_mb": {"before_warmup": round(rss_before_warmup, 1), "start": round(rss_start, 1), "end": round(rss_end, 1), "max": round(max(rss, default=rss_end), 1),
                   "growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--ask-share", type=float, default=0.2)
    ap.add_argument("--warmup", type=float, default=45, help="seconds of the same load before measuring")
    ap.add_argument("--model", default="smollm2-135m-instruct-q4_1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/load.json")
    args = ap.parse_args()
    keys = [f"load-user-{i:03d}-{os.urandom(8).hex()}" for i in range(args.users)]
    qa = str(Path(sys.executable).parent / "qa-service")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "QA_DATA_DIR": f"{tmp}/store", "QA_LLM_MODEL": args.model, "QA_API_KEYS": ",".join(keys), "QA_LLM_MAX_TOKENS": "48"}
        subprocess.run([qa, "ingest", str(ROOT / "seeds")], env=env, check=True, capture_output=True)
        server = subprocess.Popen([qa, "serve", "--port", str(args.port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{args.port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            result = asyncio.run(run(base, keys, args.duration, args.warmup, args.ask_share, psutil.Process(server.pid)))
        finally:
            server.terminate()
            server.wait(20)
    result["model"] = args.model
    result["machine"] = {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
