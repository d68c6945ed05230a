"""Scan progress on stderr, for people watching a terminal."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class HostProgress:
    """One bar per host, counting domains; callable from the scanner's worker threads."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> HostProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, host: str, done: int, total: int) -> None:
        with self._lock:
            if host not in self._tasks:
                self._tasks[host] = self._progress.add_task(host, total=total)
        self._progress.update(self._tasks[host], completed=done, total=total)
