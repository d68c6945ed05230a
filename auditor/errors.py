"""The one kind of error the command line answers with exit code 2: what the user gave is
wrong (an argument, a configuration, a waiver or baseline file, a report, a journal). Its
message is the whole line the user sees after `snapaudit: `."""

from __future__ import annotations


class UsageError(ValueError):
    """What the user gave cannot be used; the message names it and why."""
