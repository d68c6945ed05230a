"""Fix mode: recreate a domain's internal snapshots as external ones, losing nothing.

The flow, one module per stage:
  findings + live host   facts.py     what the host says: libvirt metadata (read-write
                                      connection), images, cluster tables (qcow2.py), space
  → plan                 plan.py      pure data: new images, libvirt calls, refusals; the
                                      tree per disk (tree.py), names (names.py), the rewritten
                                      XML (metadata.py); render.py prints it as text or JSON
  → journaled execution  execute.py   each step idempotent; journal.py records them; lock.py
                                      keeps two fixes off one domain; images.py runs qemu-img
  → verification                      qemu-img compare of every new image before any metadata
                                      moves, then the result read back from libvirt
command.py is the `snapaudit fix` command that wires them together.

Original images are only ever opened read-only, so a rollback never copies data back.
"""
