"""Opening libvirt connections: every connection snapaudit makes is opened here, so this is
the one place that silences libvirt's own error printing and runs the event loop that
keepalive and the embedded drivers need."""

from __future__ import annotations

import contextlib
import os
import threading
from urllib.parse import urlsplit

import libvirt

# Remote connections ping their daemon every KEEPALIVE_INTERVAL seconds and give up after
# KEEPALIVE_COUNT unanswered pings, so that a dead peer fails the calls instead of hanging them.
KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 5

# libvirt prints every error to stderr unless a handler is registered; snapaudit reports
# errors through exceptions instead, as one line.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def open_read_only(uri: str | None) -> libvirt.virConnect:
    """A read-only connection; to another machine, with keepalive."""
    remote = _remote(uri)
    if remote or _embedded(uri):
        start_event_loop()  # before connecting: keepalive and embedded drivers run on it
    conn = libvirt.openReadOnly(uri)
    if remote:  # a daemon without keepalive still answers; the host deadline still holds
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
    return conn


def open_read_write(uri: str | None) -> libvirt.virConnect:
    if _embedded(uri):
        start_event_loop()
    return libvirt.open(uri)


def _remote(uri: str | None) -> bool:
    """Whether URI names another machine (a host part), where a peer can die silently."""
    try:
        return bool(uri and urlsplit(uri).hostname)
    except ValueError:
        return False


def _embedded(uri: str | None) -> bool:
    """Whether URI (None: libvirt's default, as LIBVIRT_DEFAULT_URI names it) opens an
    embedded driver (qemu:///embed?root=DIR), which runs in this process on its event loop."""
    uri = uri or os.environ.get("LIBVIRT_DEFAULT_URI")
    try:
        parts = urlsplit(uri or "")
    except ValueError:
        return False
    return not parts.netloc and parts.path == "/embed"


_event_loop_lock = threading.Lock()
_event_loop_started = False


def start_event_loop() -> None:
    """libvirt's default event loop, which keepalive and embedded drivers need, run on a
    daemon thread. One per process; registering it again is harmless (libvirt 6.3+ runs it on
    GLib's main context)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()
