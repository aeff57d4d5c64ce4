"""Crash safety: an ingest process SIGKILLed at random moments, 20 times, restarted and re-run each time.

Every restart (a fresh process) checks every acknowledged article: present, at its acknowledged revision or later,
exactly the chunks its record lists (no duplicates, none missing), and found by search. A restart whose chunk index
Chroma can no longer read makes it again from the records (QAService.rebuilt_chunks); the figures count those.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SHARED

pytestmark = pytest.mark.server

CORPUS = SHARED / "eval" / "qamr-wikinews" / "corpus.jsonl"
ARTICLES = 40
KILLS = 20


def run_worker(data: Path, revision: int, acks: Path, kill_after: float | None) -> tuple[dict[str, int], bool, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", str(data), str(CORPUS), str(ARTICLES), str(revision), str(acks)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    assert proc.stdout is not None
    opened = proc.stdout.readline()
    verified = proc.stdout.readline()
    if not opened.startswith("OPEN") or not verified.startswith("VERIFY"):
        proc.kill()
        raise AssertionError(f"restart {revision} did not open cleanly: {opened!r} {verified!r} {proc.stderr.read()[-2000:] if proc.stderr else ''}")
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    finished = "DONE" in out
    if kill_after is None:
        assert proc.returncode == 0 and finished, err[-2000:]
    if "MISSING" in err:
        print(err[:3000])
    return json.loads(verified.split(" ", 1)[1]), finished, opened.strip()


def test_sigkill_during_ingest_loses_nothing(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(6975)
    data, acks = tmp_path / "store", tmp_path / "acks.txt"
    totals: dict[str, int] = {}
    finished_runs = recovered = rebuilt = 0
    for revision in range(1, KILLS + 1):
        result, finished, opened = run_worker(data, revision, acks, kill_after=rng.uniform(0.2, 5.0))
        finished_runs += finished
        counts = dict(field.split("=") for field in opened.split()[1:])
        recovered += int(counts["recovered"])
        rebuilt += int(counts["rebuilt"]) > 0
        for k, v in result.items():
            totals[k] = totals.get(k, 0) + v
    final, _, opened = run_worker(data, KILLS + 1, acks, kill_after=None)
    last, _, _ = run_worker(data, KILLS + 2, acks, kill_after=0)
    bad = {k: v for k, v in {**totals, **{f"final_{k}": v for k, v in final.items()}}.items() if "checked" not in k and v}
    figures(
        f"crash: {KILLS} SIGKILLs ({finished_runs} runs finished before their kill), {KILLS + 2}/{KILLS + 2} restarts opened cleanly, "
        f"{recovered} orphan chunks repaired on open, {rebuilt} unreadable chunk indexes made again from the records; "
        f"over all restarts {totals}; after a clean re-run {last}"
    )
    assert not bad, bad
    assert last["checked"] == ARTICLES and all(v == 0 for k, v in last.items() if k != "checked")
