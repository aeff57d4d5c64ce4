"""The one-writer rule, enforced: every write (ingest, delete, crash repair) holds an exclusive file lock.

Threads of one process serialise on a mutex; processes on one host (API workers, a CLI ingest next to a running
server) serialise on flock. Writers on several hosts sharing one Chroma server are not covered: run one writer host.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qa_service.errors import Busy


class WriterLock:
    def __init__(self, path: Path, timeout_s: float = 60.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._mutex = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._mutex.acquire(timeout=self.timeout_s):
            raise Busy(f"another write is in progress in this process; gave up after {self.timeout_s:.0f} s")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                deadline = time.monotonic() + self.timeout_s
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise Busy(f"another process is writing to this store ({self.path}); gave up after {self.timeout_s:.0f} s") from None
                        time.sleep(0.05)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            self._mutex.release()
