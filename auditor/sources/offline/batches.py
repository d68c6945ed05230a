"""Work on many independent items spread over every CPU: each batch of consecutive items runs
in a forked worker process, and the results come back in the items' order, so that what a
source reads is the same however many processes read it.

Processes, not threads: reading a metadata file is mostly Python (building the model and
auditing it), which threads cannot overlap. The workers are forked so that they inherit the
work as it is (the rules, plugins included, and the directory listing) without pickling it;
only the results travel back, pickled compactly (the model's records as plain tuples).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import operator
import os
import pickle
import signal
import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from auditor import model
from auditor.stopping import die_with_parent

Work = Callable[[int, int], list]  # (start, stop) -> one result per item, in order

MAX_PROCESSES = 8
STOPS = (signal.SIGINT, signal.SIGTERM)
_work: Work | None = None  # what the forked workers run: set before they are forked


class WorkerLost(RuntimeError):
    """A worker process died (killed, out of memory) before sending its batch back."""


def map_batches(work: Work, total: int, batch: int) -> Generator:
    """The results of WORK for items 0..TOTAL, one batch of BATCH items at a time, in order.
    A single batch, a single CPU, or a process that has other threads is worked here."""
    bounds = [(start, min(total, start + batch)) for start in range(0, total, batch)]
    processes = min(len(bounds), _cpus(), MAX_PROCESSES)
    if processes < 2 or _threads() > 1:
        for start, stop in bounds:
            yield from work(start, stop)
        return
    global _work
    _work = work
    pool = ProcessPoolExecutor(
        processes, mp_context=get_context("fork"), initializer=_init, initargs=(die_with_parent(),)
    )
    # The records are acyclic, so the collector finds nothing in them; left on, it goes over
    # the growing pile again and again (two thirds of this process's time here). They live
    # as long as the scan's result: once read, they are frozen out of the collector's way
    # (which also spares the reports' rendering a pass over them).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with _stops_deferred():
            futures = deque(pool.submit(_run, start, stop) for start, stop in bounds)
        for start, stop in bounds:  # each batch's bytes are dropped once read
            try:
                sent = futures.popleft().result()
            except BrokenProcessPool as exc:
                raise WorkerLost("a worker process died (killed, or out of memory)") from exc
            # None: the results could not be sent back (a plugin's odd value): worked here.
            yield from work(start, stop) if sent is None else pickle.loads(sent)
    except BaseException:
        # Stopped, or an error: the workers finish their batch at most, then exit (and die
        # with this process anyway); nothing waits for them.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown()
        gc.freeze()
    finally:
        _work = None
        if collecting:
            gc.enable()


@contextlib.contextmanager
def _stops_deferred():
    """A stop signal that arrives while the workers are forked takes effect right after:
    a handler that raises during a fork runs in Python's own after-fork hooks, which print
    the exception and go on as if nothing had happened."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are handled by the main thread alone
        return
    noted: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: noted.append(signum)) for s in STOPS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted:
            signal.raise_signal(noted[0])


def _threads() -> int:
    """The threads of this process, libvirt's and lxml's included: a fork copies only the
    forking one, and any lock another holds stays held in the child for ever (a host whose
    calls timed out leaves its thread blocked in libvirt while the scan goes on)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc: nothing to tell, so never fork
        return 2


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init(die_with_parent: Callable[[], object]) -> None:
    die_with_parent()
    # What the worker inherited stays as it is: never collected, so never copied either. The
    # collector was off in the parent when it forked; here it runs as usual.
    gc.freeze()
    gc.enable()
    # A stop from the terminal reaches the whole process group: the parent stops the scan,
    # and its workers must not print tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(start: int, stop: int) -> bytes | None:
    assert _work is not None
    results = _work(start, stop)
    out = io.BytesIO()
    pickler = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _COMPACT
    try:
        pickler.dump(results)
    except Exception:  # whatever a plugin's value raises: the parent works the batch itself
        return None
    return out.getvalue()


# What pickle writes for a record: the class to call, and the arguments to call it with.
_Reduce = Callable[[object], tuple[type, tuple[object, ...]]]


def _compact(cls: type) -> _Reduce:
    # A record as its class and field values: unpickled by one constructor call, instead of
    # the default's state list applied field by field.
    fields = dataclasses.fields(cls)
    assert all(f.init for f in fields)
    values = operator.attrgetter(*(f.name for f in fields))
    return lambda record: (cls, values(record))


_COMPACT: dict[type, _Reduce] = {
    cls: _compact(cls)
    for cls in (
        model.DiskSource,
        model.SnapshotDisk,
        model.Snapshot,
        model.DomainDisk,
        model.Domain,
        model.Skipped,
        model.Finding,
        model.RuleError,
    )
}
