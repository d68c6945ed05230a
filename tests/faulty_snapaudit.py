"""`snapaudit` with the fault points of a conversion armed from the environment. The tests that
fault a conversion run this script; the installed command never reads these variables
(auditor/fix/faults.py says why it cannot).

SNAPAUDIT_FIX_FAULT_AT=N stops (SNAPAUDIT_FIX_FAULT=stop: SIGSTOP, so that the test can change
the world, then continue or kill it) or kills (SIGKILL, the default) the process just before
its Nth journal record; N+ just after it.
SNAPAUDIT_FIX_KILL_AFTER_STEP=K kills it as `kill -9` would, right after step K is journaled
or, with SNAPAUDIT_FIX_KILL_BEFORE_JOURNAL set, once step K is done but not journaled yet.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping

from auditor.cli.app import main
from auditor.fix import faults


class Faults:
    """The hook: counts this process's journal records, and acts where ENV says."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.record_at = env.get("SNAPAUDIT_FIX_FAULT_AT")
        stop = env.get("SNAPAUDIT_FIX_FAULT") == "stop"
        self.record_signal = signal.SIGSTOP if stop else signal.SIGKILL
        self.step = env.get("SNAPAUDIT_FIX_KILL_AFTER_STEP")
        self.before_journal = bool(env.get("SNAPAUDIT_FIX_KILL_BEFORE_JOURNAL"))
        self.records = 0

    def __call__(self, point: str, step: int | None) -> None:
        if point == faults.BEFORE_RECORD:
            self.records += 1
            if self.record_at == str(self.records):
                os.kill(os.getpid(), self.record_signal)
        elif point == faults.AFTER_RECORD:
            if self.record_at == f"{self.records}+":
                os.kill(os.getpid(), self.record_signal)
        elif str(step) == self.step and (point == faults.STEP_DONE) == self.before_journal:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.argv[0] = "snapaudit"  # as usage messages name the command
    faults.install(Faults(os.environ))
    main()
