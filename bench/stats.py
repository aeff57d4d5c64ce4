"""Helpers the bench scripts share: the dev sets, and a real server to measure the API through."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEV_SETS = {  # dev sets with an eval collection each (`qa-service eval --search-only` once makes it)
    "qamr": ROOT.parent / "shared/eval/qamr-wikinews",
    "realtimeqa": ROOT.parent / "shared/eval/realtimeqa-2023",
}


@contextmanager
def served(app: Any) -> Iterator[str]:
    """The app behind a real uvicorn server on 127.0.0.1, in a thread of this process; yields its base URL.
    Starlette's TestClient hops threads several times per request (~6 ms each request on this VM, against ~2 ms
    for a real socket), which would be measured as if it were the service."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name="bench-server")
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the benchmark server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
