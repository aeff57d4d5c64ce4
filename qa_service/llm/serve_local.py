"""Serve a packaged GGUF model as an OpenAI-compatible HTTP server (xllamacpp) on loopback.

    python -m qa_service.llm.serve_local --model smollm2-135m-instruct-q4_1 --port 8080

Used by the tests as a real OpenAI-compatible peer, and handy for pointing several API workers at one model.
"""

from __future__ import annotations

import argparse
import signal
import threading

from qa_service.config import Settings
from qa_service.llm.local import make_server
from qa_service.models import resolve_gguf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=Settings().llm_model)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=Settings().threads)
    args = ap.parse_args()
    path = resolve_gguf(args.model, Settings().model_cache_dir)
    server = make_server(path, n_ctx=args.ctx, threads=args.threads, host=args.host, port=args.port)
    print(f"serving {args.model} at {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server


if __name__ == "__main__":
    main()
