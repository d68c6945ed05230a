"""File names for the new images: readable, safe for any characters a name may hold, and
never colliding (a snapshot may be named `<img src=x onerror=alert(1)>` or `../../etc`)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_SLUG = 40
# What image_name and after_name make, and all a journal may name as a new image.
IMAGE_NAME = re.compile(r"^(?:[A-Za-z0-9_-]+\.){3}[0-9a-f]{8}(?:\.after)?\.qcow2$")


def slug(text: str) -> str:
    """TEXT reduced to letters, digits, '_' and '-': no '/', no dots, nothing hidden."""
    return _UNSAFE.sub("_", text).strip("_")[:_MAX_SLUG] or "x"


def _digest(*parts: str) -> str:
    # The hash keeps names unique where slugs collide ('a b' and 'a/b'), and differs between
    # conversions of the same domain because the source image differs.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def image_name(domain: str, uuid: str, disk: str, snapshot: str | None, source: str) -> str:
    """The state image of DISK at SNAPSHOT, or of DISK now when SNAPSHOT is None."""
    label = "current" if snapshot is None else slug(snapshot)
    digest = _digest(uuid, disk, "" if snapshot is None else f"@{snapshot}", source)
    return f"{slug(domain)}.{slug(disk)}.{label}.{digest}.qcow2"


def after_name(state_image: str) -> str:
    """The overlay a leaf snapshot names for changes made after it: none are kept, so libvirt
    never opens it (reverting creates a fresh one), as after a revert with native snapshots."""
    return state_image.removesuffix(".qcow2") + ".after.qcow2"


def journal_name(domain: str, uuid: str, when: datetime) -> str:
    return f"{slug(domain)}.{uuid}.{when:%Y%m%dT%H%M%S%fZ}.journal"
