"""Refreshing due sources in the background of a running server."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from qa_service.errors import QAError
from qa_service.sources.refresh import Sources

log = logging.getLogger(__name__)


class Scheduler:
    """Refreshes due sources in the background of a server. Of several worker processes, the one holding
    data_dir/.scheduler.lock does it; the others keep trying, so one takes over when that worker exits."""

    def __init__(self, sources_of: Callable[[], Iterable[Sources]], data_dir: Path, poll_s: float) -> None:
        """`sources_of`: the sources of every collection that follows some, asked again at each look."""
        self.sources_of = sources_of
        self.data_dir = data_dir
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="qa-sources")
        self._fd: int | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._fd is not None:
            os.close(self._fd)

    def _leader(self) -> bool:
        if self._fd is not None:
            return True
        path = self.data_dir / ".scheduler.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self._leader():
                    for sources in self.sources_of():
                        sources.refresh_due()
            except QAError as exc:  # the writer lock busy, the store down: try again next time
                log.warning("scheduled refresh skipped: %s", exc.message)
            except Exception:
                log.exception("scheduled refresh failed")
