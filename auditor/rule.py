"""What a rule is: a pure check function plus its metadata and documentation.

A rule module defines one function, decorated with `@rule(...)`. The function's docstring is
the rule's documentation: a one-line summary, then the sections in DOC_SECTIONS, each a
heading line ending in a colon followed by an indented body. `snapaudit explain` prints them.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args

from auditor.model import Domain, FileFacts, Host, Severity, Snapshot

DOC_SECTIONS = ("What it checks", "Why", "Noncompliant", "Compliant", "Remediation", "Reference")
CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*[0-9]{3}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may know beyond what it checks. Filled by the scanner, never by I/O
    inside a rule."""

    host: str = ""
    # Facts about the files the metadata names, by path; None when the host's files were not
    # checked (remote host, test driver): rules about files then have nothing to say.
    files: Mapping[str, FileFacts] | None = None
    # The rule's parameters: its defaults, overridden by the configuration with values of the
    # same type (each parameter has its own: the rule knows which).
    params: Mapping[str, Any] = field(default_factory=dict)
    # "Now", injected so that age checks are exact in tests and reproducible in reports.
    now: datetime = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Violation:
    """What a check yields; the engine turns it into a Finding with the rule's metadata."""

    message: str
    disk: str | None = None
    severity: Severity | None = None  # None: the rule's default severity
    # The image file the violation is about. A domain rule's violation that names no snapshot
    # is identified by its image (and tag) instead.
    image: str | None = None
    snapshot: str | None = None  # domain rules: the domain's snapshot the violation is about
    tag: str | None = None  # an internal snapshot in `image` that libvirt has no metadata for


# What a rule's check() receives: each Snapshot, each Domain, or each scanned Host.
Scope = Literal["snapshot", "domain", "host"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
Subject = TypeVar("Subject", Snapshot, Domain, Host)
# A check, called with the Snapshot, Domain or Host its rule's scope names.
Check = Callable[[Any, Context], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity  # the default, or the highest a rule with variants can report
    check: Check
    tags: tuple[str, ...] = ()
    scope: Scope = "snapshot"
    params: Mapping[str, object] = field(default_factory=dict)  # defaults, by name
    enabled: bool = True  # whether it runs unless the configuration selects it
    doc: str = ""
    sections: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def summary(self) -> str:
        return self.doc.split("\n", 1)[0].strip()

    @property
    def remediation(self) -> str:
        """The Remediation section as one paragraph, carried by every finding."""
        return " ".join(self.sections.get("Remediation", "").split())


def rule(
    code: str,
    name: str,
    severity: str | Severity,
    *,
    tags: Iterable[str] = (),
    scope: Scope = "snapshot",
    params: Mapping[str, object] | None = None,
    enabled: bool = True,
) -> Callable[[Callable[[Subject, Context], Iterable[Violation]]], Rule]:
    """Turn a check function into a Rule (the decorated name is bound to the Rule).

    A snapshot rule is called with each Snapshot; a domain rule with each Domain (its current
    disks and all its snapshots), for what no single snapshot can tell; a host rule with each
    scanned Host. `params` are the rule's parameters with their defaults (the configuration
    may override them, with values of the same type); a rule with `enabled=False` runs only
    when selected.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")

    def wrap(check: Check) -> Rule:
        doc = inspect.getdoc(check) or ""
        return Rule(
            code=code,
            name=name,
            severity=Severity(severity),
            check=check,
            tags=tuple(tags),
            scope=scope,
            params=dict(params or {}),
            enabled=enabled,
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
