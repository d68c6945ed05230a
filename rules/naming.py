import re
from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule(
    "SNAP016",
    "naming",
    "warning",
    tags=("policy",),
    enabled=False,
    params={"pattern": "", "require_description": False},
)
def naming(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A snapshot's name or description does not follow the site's convention.

    What it checks:
        Off unless selected. Snapshot names must match the regular expression `pattern`
        (the whole name; an empty pattern accepts any name), and with
        `require_description = true` every snapshot must have a description.

    Why:
        A name that says what a restore point is for (a ticket, a change, a date) and a
        description make it possible to decide later whether it can go.

    Noncompliant:
        <domainsnapshot><name>snap1</name></domainsnapshot>

    Compliant:
        <domainsnapshot>
          <name>CHG-1234-before-kernel-update</name>
          <description>Rollback point for change CHG-1234</description>
        </domainsnapshot>

    Remediation:
        Take snapshots with names that match the convention and a description
        (`virsh snapshot-create-as VM NAME "DESCRIPTION" ...`); an existing snapshot's
        description can be set with `virsh snapshot-edit`.

    Reference:
        libvirt, Snapshot XML format: <name> and <description> (https://libvirt.org/formatsnapshot.html).
    """
    pattern: str = context.params["pattern"]
    if pattern and not re.fullmatch(pattern, snapshot.name):
        yield Violation(f"snapshot name does not match the pattern {pattern!r}")
    if context.params["require_description"] and not (snapshot.description or "").strip():
        yield Violation("snapshot has no description")
