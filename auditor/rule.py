"""What a rule is: a pure check function plus its metadata and documentation.

A rule module defines one function, decorated with `@rule(...)`. The function's docstring is
the rule's documentation: a one-line summary, then the sections in DOC_SECTIONS, each a
heading line ending in a colon followed by an indented body. `snapaudit explain` prints them.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from auditor.model import Severity, Snapshot

DOC_SECTIONS = ("What it checks", "Why", "Noncompliant", "Compliant", "Remediation", "Reference")
CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*[0-9]{3}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may know beyond the snapshot itself. Filled by the scanner, never by I/O
    inside a rule."""

    host: str = ""


@dataclass(frozen=True, slots=True)
class Violation:
    """What a check yields; the engine turns it into a Finding with the rule's metadata."""

    message: str
    disk: str | None = None
    severity: Severity | None = None  # None: the rule's default severity


Check = Callable[[Snapshot, Context], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity  # the default, or the highest a rule with variants can report
    check: Check
    tags: tuple[str, ...] = ()
    doc: str = ""
    sections: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def summary(self) -> str:
        return self.doc.split("\n", 1)[0].strip()

    @property
    def remediation(self) -> str:
        """The Remediation section as one paragraph, carried by every finding."""
        return " ".join(self.sections.get("Remediation", "").split())


def rule(code: str, name: str, severity: str | Severity, *, tags: Iterable[str] = ()):
    """Turn a check function into a Rule (the decorated name is bound to the Rule)."""

    def wrap(check: Check) -> Rule:
        doc = inspect.getdoc(check) or ""
        return Rule(
            code=code,
            name=name,
            severity=Severity(severity),
            check=check,
            tags=tuple(tags),
            doc=doc,
            sections=parse_sections(doc),
        )

    return wrap


def parse_sections(doc: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    current = None
    body: list[str] = []
    for line in doc.splitlines()[1:]:
        heading = line.rstrip()
        if heading.endswith(":") and heading[:-1] in DOC_SECTIONS:
            if current:
                sections[current] = textwrap.dedent("\n".join(body)).strip("\n")
            current, body = heading[:-1], []
        elif current:
            body.append(line)
    if current:
        sections[current] = textwrap.dedent("\n".join(body)).strip("\n")
    return sections
