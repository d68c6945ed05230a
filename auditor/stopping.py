"""Stopping on SIGINT and SIGTERM: promptly, without a traceback, with the shell's exit codes.

A scan stops at once: the main thread only waits (in short slices) for worker threads, so the
signal handler's exception ends it wherever it is, and no report is written. Work that must
not be cut in the middle (a fix step and its journal line) runs under `at_step_boundaries`:
there a signal is only noted, and `step_boundary()` stops between two steps. The tools a
scan or a fix starts die with it (`die_with_parent`), SIGKILL included.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)
F = TypeVar("F", bound=Callable)
_PR_SET_PDEATHSIG = 1


class Stopped(BaseException):
    """A stop signal arrived. BaseException, so that no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # as a shell reports a process killed by the signal


_deferring = 0  # depth of at_step_boundaries sections
_pending: int | None = None  # a signal noted while deferring


def _handler(signum: int, _frame) -> None:
    global _pending
    if _deferring:
        _pending = signum
        return
    raise Stopped(signum)


def at_step_boundaries(func: F) -> F:
    """While FUNC runs, a stop signal waits for the next `step_boundary()`; one that arrived
    during its last step stops the process right after it returns."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _deferring
        _deferring += 1
        try:
            return func(*args, **kwargs)
        finally:
            _deferring -= 1
            if not _deferring:
                step_boundary()

    return wrapper  # type: ignore[return-value]


def step_boundary() -> None:
    """Stop here if a stop signal has arrived."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise Stopped(signum)


def run_main(main: Callable[[], object]) -> None:
    """Run the command line's MAIN with the stop signals handled, and exit. The exit does not
    wait for worker threads: a thread blocked in a libvirt call to a host that never answers
    would otherwise keep the process alive after its reports are written."""
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    try:
        try:
            main()
            code = 0
        finally:
            for signum in SIGNALS:  # a second signal must not interrupt the exit
                signal.signal(signum, signal.SIG_IGN)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except Stopped as stop:
        code = stop.exit_code
        print(f"snapaudit: stopped by {stop}", file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe must not stop the exit
            stream.flush()
    if threading.active_count() > 1:
        os._exit(code)
    sys.exit(code)


def die_with_parent() -> Callable[[], None]:
    """The preexec_fn for a child of this process, made here, in the parent: prctl is looked
    up beforehand (a child forked from a threaded process must not load libraries before it
    execs), and the parent is named, so that a child whose parent died between the fork and
    the prctl (which then never fires) exits instead of running on."""
    prctl, parent = _prctl(), os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return arm


@functools.cache
def _prctl():
    return ctypes.CDLL(None, use_errno=True).prctl
