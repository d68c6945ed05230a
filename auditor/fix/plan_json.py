"""Plans and steps as JSON, and back: the journal stores a plan with its secrets (the XML,
for redefinition and an exact rollback); the JSON output shows it without them."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, get_args

from auditor.fix.plan import DomainPlan, NewImage, Original, Restore, Space, Step

_BY_KIND: dict[str, type] = {cls.kind: cls for cls in get_args(Step)}
_SECRET_FIELDS = {"xml"}


def step_to_json(step: Step, *, secrets: bool) -> dict[str, Any]:
    data = {"kind": step.kind, **asdict(step)}
    return data if secrets else {k: v for k, v in data.items() if k not in _SECRET_FIELDS}


def step_from_json(data: dict[str, Any]) -> Step:
    cls = _BY_KIND[data["kind"]]
    if "tag" not in data and "source" in data:
        # Journals written before trees could hold external snapshots read every state at
        # the internal snapshot of its own name.
        data = {**data, "tag": data["snapshot"]}
    return cls(**{f.name: data[f.name] for f in fields(cls)})


def plan_to_json(plan: DomainPlan, *, secrets: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "host": plan.host,
        "domain": plan.domain,
        "uuid": plan.uuid,
        "status": plan.status,
        "refusals": list(plan.refusals),
        "snapshots": list(plan.snapshots),
        "current": plan.current,
        "disks": list(plan.disks),
        "images": [asdict(i) for i in plan.images],
        "space": [asdict(s) for s in plan.space],
        "originals": [asdict(o) for o in plan.originals],
        "remove_originals": plan.remove_originals,
        "steps": [step_to_json(s, secrets=secrets) for s in plan.steps],
        "notes": list(plan.notes),
    }
    if secrets and plan.restore is not None:
        data["restore"] = asdict(plan.restore)
    return data


def plan_from_json(data: dict[str, Any]) -> DomainPlan:
    restore = data.get("restore")
    return DomainPlan(
        host=data["host"],
        domain=data["domain"],
        uuid=data["uuid"],
        refusals=tuple(data["refusals"]),
        snapshots=tuple(data["snapshots"]),
        current=data["current"],
        disks=tuple(data["disks"]),
        images=tuple(NewImage(**i) for i in data["images"]),
        space=tuple(Space(**s) for s in data["space"]),
        originals=tuple(Original(**o) for o in data["originals"]),
        remove_originals=data["remove_originals"],
        steps=tuple(step_from_json(s) for s in data["steps"]),
        notes=tuple(data.get("notes", ())),
        restore=None
        if restore is None
        else Restore(
            restore["domain_xml"],
            tuple((name, xml) for name, xml in restore["snapshots"]),
            restore["current"],
        ),
    )
