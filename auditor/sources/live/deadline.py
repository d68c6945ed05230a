"""Work on daemon threads that the caller can stop waiting for.

A libvirt call blocked in C (a host that accepted the connection and never answers) cannot
be interrupted from Python. So each job runs on a daemon thread; at its deadline the caller
gives up on it and carries on, and the thread, still blocked, neither holds up the others nor
keeps the process from exiting. The caller waits in short slices, so that signal handlers
run promptly in the main thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# How long the waiting thread sleeps at most between two looks at its deadlines and signals.
SLICE = 0.1


@dataclass(frozen=True)
class TimedOut:
    """The job did not finish within its time; its thread was abandoned."""

    seconds: float


@dataclass(frozen=True)
class Raised:
    """The job raised instead of returning."""

    exception: BaseException


def run_each(
    jobs: Iterable[Callable[[], Any]], timeout: float | None, workers: int
) -> Iterator[tuple[int, Any]]:
    """Run the jobs, at most WORKERS at once, each on its own daemon thread; yield (index,
    result) as each ends. The result is what the job returned, Raised, or TimedOut when the
    job ran for more than TIMEOUT seconds (None: no limit). An abandoned job no longer counts
    against WORKERS."""
    pending = list(enumerate(jobs))
    pending.reverse()  # pop() from the end starts them in order
    done: queue.Queue[tuple[int, Any]] = queue.Queue()
    running: dict[int, float] = {}  # index -> deadline (monotonic)

    def call(index: int, job: Callable[[], Any]) -> None:
        try:
            outcome = job()
        except BaseException as exc:  # whatever it is, it is this job's result
            outcome = Raised(exc)
        done.put((index, outcome))

    while pending or running:
        while pending and len(running) < workers:
            index, job = pending.pop()
            running[index] = time.monotonic() + timeout if timeout is not None else float("inf")
            threading.Thread(target=call, args=(index, job), daemon=True).start()
        now = time.monotonic()
        wait = min(SLICE, max(0.0, min(running.values()) - now))
        try:
            index, outcome = done.get(timeout=wait)
        except queue.Empty:
            if timeout is None:  # no job runs out of time
                continue
            now = time.monotonic()
            for index in [i for i, end in running.items() if end <= now]:
                del running[index]
                yield index, TimedOut(timeout)
            continue
        if index in running:  # else it was given up on already: its late result is dropped
            del running[index]
            yield index, outcome


def run_all(work: Callable[[Any], None], items: Iterable[Any], workers: int) -> None:
    """WORK(item) for every item on at most WORKERS daemon threads, waiting for all; the
    first exception raised, if any, is raised again once every item has been worked on.
    Unlike a ThreadPoolExecutor, a thread stuck in C does not hold up the process's exit."""
    items = iter(list(items))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                item = next(items, _END)
            if item is _END:
                return
            try:
                work(item)
            except BaseException as exc:  # handed to the caller below
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


_END = object()
