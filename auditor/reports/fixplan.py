"""A fix plan (and, with --apply, its outcome) as text for people or JSON for scripts.

Names come from hosts: control characters are escaped as in the text report, a line at a
time. Refusals are kept unescaped in the plan and escaped only here. The XML a plan carries
holds the domain's secrets and is never shown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from auditor.display import clean, human_size
from auditor.fix.plan import (
    CreateImage,
    CreateOverlay,
    DefineDomain,
    DomainPlan,
    DropSnapshotMetadata,
    Outcome,
    RedefineSnapshot,
    RemoveOriginal,
    Step,
    VerifyImage,
    at,
    quoted,
)
from auditor.fix.plan_json import plan_to_json

SCHEMA = "snapaudit/fix-plan/v1"


def describe(step: Step) -> str:
    """One line per step, for the plan and for progress."""
    return clean(_describe(step))


def _describe(step: Step) -> str:
    match step:
        case CreateImage():
            what = f"disk {step.disk} at {at(step.snapshot)}"
            if step.backing is None:
                return f"qemu-img convert: {what} as a full image {step.path}"
            return (
                f"qemu-nbd + qemu-img rebase: {what} as {step.path}, "
                f"storing what differs from {step.backing}"
            )
        case CreateOverlay():
            return (
                f"qemu-img create: {step.path}, an empty overlay on {step.backing} for what "
                f"comes after {at(step.snapshot)}"
            )
        case VerifyImage():
            return f"qemu-img compare: {step.path} against {at(step.snapshot)} of {step.source}"
        case DropSnapshotMetadata():
            return f"libvirt: drop the internal metadata of snapshot {quoted(step.snapshot)}"
        case RedefineSnapshot():
            current = ", current" if step.current else ""
            return f"libvirt: redefine snapshot {quoted(step.snapshot)} as external{current}"
        case DefineDomain():
            moves = ", ".join(f"{d} on {p}" for d, p in step.sources.items())
            return f"libvirt: define the domain with {moves}"
        case RemoveOriginal():
            return f"remove the original image {step.path}"
    raise AssertionError(step)


def header(host: str, *, apply: bool) -> str:
    how = "converting" if apply else "dry run, nothing is changed: add --apply to convert"
    return clean(f"snapaudit fix on {host} ({how})") + "\n"


def render_domain(outcome: Outcome) -> str:
    plan = outcome.plan
    lines = [""]
    name = quoted(plan.domain)
    if plan.status == "refused":
        lines.append(f"domain {name}: refused")
        lines += [f"  - {reason}" for reason in plan.refusals]
    elif plan.status == "nothing to do":
        lines.append(f"domain {name}: nothing to convert (no internal snapshots)")
    else:
        lines += _plan_lines(plan)
    if outcome.result == "converted":
        lines.append(f"  converted; journal {outcome.journal or ''}")
    elif outcome.result == "failed":
        where = f"; journal {outcome.journal}" if outcome.journal else ""
        lines.append(f"  FAILED: {outcome.error or ''}{where}")
    return "\n".join(clean(line) for line in lines) + "\n"


def render_finished(outcome: Outcome) -> str:
    """The line of --resume or --rollback: what became of the conversion."""
    name = clean(quoted(outcome.plan.domain))
    if outcome.result == "failed":
        return f"domain {name}: FAILED: {outcome.error}\n"
    return f"domain {name}: {outcome.result}; journal {outcome.journal}\n"


def _plan_lines(plan: DomainPlan) -> list[str]:
    count = len(plan.snapshots)
    lines = [
        f"domain {quoted(plan.domain)}: convert {count} snapshot{'s' * (count != 1)} on "
        + ", ".join(plan.disks)
    ]
    shown = [quoted(s) + (" (current)" if s == plan.current else "") for s in plan.snapshots]
    lines.append(f"  snapshots, parents first: {', '.join(shown)}")
    lines += [f"  note: {note}" for note in plan.notes]
    lines.append("  new images (estimated size, at most):")
    width = max((len(human_size(i.estimated_bytes)) for i in plan.images), default=0)
    for image in plan.images:
        if image.after:
            what = f"after {at(image.snapshot)}: empty, nothing after it was kept"
        elif image.backing is None:
            what = f"at {at(image.snapshot)}: full image"
        else:
            what = f"at {at(image.snapshot)}: what differs from its parent"
        lines.append(
            f"    {human_size(image.estimated_bytes):>{width}}  {image.path}  "
            f"(disk {image.disk} {what})"
        )
    for space in plan.space:
        lines.append(
            f"  free space in {space.directory}: {human_size(space.needed)} needed, "
            f"{human_size(space.available)} available"
        )
    originals = ", ".join(o.path for o in plan.originals)
    if plan.remove_originals:
        lines.append(f"  originals removed once all is done: {originals}")
    else:
        lines.append(f"  originals kept, never written: {originals}")
    lines.append("  steps:")
    width = len(str(len(plan.steps)))
    for number, step in enumerate(plan.steps, 1):
        lines.append(f"    {number:>{width}}. {_describe(step)}")
    return lines


def summary(outcomes: Sequence[Outcome]) -> str:
    if not outcomes:
        return "\nno domain has internal snapshots: nothing to convert\n"
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = outcome.result or {"ready": "to convert"}.get(
            outcome.plan.status, outcome.plan.status
        )
        counts[key] = counts.get(key, 0) + 1
    order = ("converted", "to convert", "failed", "refused", "nothing to do")
    parts = [f"{counts[k]} {k}" for k in order if k in counts]
    total = len(outcomes)
    return f"\n{total} domain{'s' * (total != 1)}: {', '.join(parts)}\n"


def render_json(host: str, outcomes: Sequence[Outcome], *, apply: bool) -> str:
    domains = []
    for outcome in outcomes:
        data = plan_to_json(outcome.plan, secrets=False)
        steps = zip(outcome.plan.steps, data["steps"], strict=True)
        for number, (step, shown) in enumerate(steps, 1):
            shown["number"] = number
            shown["description"] = describe(step)
        data.update(result=outcome.result, journal=outcome.journal, error=outcome.error)
        domains.append(data)
    document = {"schema": SCHEMA, "host": host, "apply": apply, "domains": domains}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
