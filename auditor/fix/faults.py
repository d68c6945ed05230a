"""Fault points: where the tests stop or kill a conversion, to prove that --resume and
--rollback recover from every point of it (just before and after each journal record, and
between a step done and its record).

`reached()` does nothing unless a hook was installed in this very process, and only a call
to `install()` installs one. No module of the package makes that call, and nothing here reads
the environment, a file or an option: the test suite's own entry script
(tests/faulty_snapaudit.py, which neither the wheel nor the RPM ships) installs a hook, then
runs the command. So no variable, setting or file can make a `snapaudit fix` stop or die at
a fault point.
"""

from __future__ import annotations

from collections.abc import Callable

# The points, as `reached()` names them to the hook, with the step's number for the last two.
BEFORE_RECORD = "before a journal record"
AFTER_RECORD = "after a journal record"
STEP_DONE = "step done, not journaled yet"
STEP_JOURNALED = "step journaled"

Hook = Callable[[str, int | None], None]
# The one slot install() fills: the command's entry point takes no hook to pass along.
_hook: Hook | None = None


def install(hook: Hook) -> None:
    global _hook
    _hook = hook


def reached(point: str, step: int | None = None) -> None:
    """A conversion is at POINT: the installed hook, if any, may stop or kill the process."""
    if _hook is not None:
        _hook(point, step)
