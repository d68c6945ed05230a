"""Fix mode: recreate a domain's internal snapshots as external ones, losing nothing.

The flow, one module per stage:
  findings + live host   gather.py    all the I/O: libvirt metadata (read-write connection),
                                      images, cluster tables (qcow2.py), space; it returns
                                      the plain data of facts.py
  → plan                 planner.py   pure, no I/O: new images and libvirt calls, as the
                                      records of plan.py; refusals.py says why not; the
                                      tree per disk (tree.py), names (names.py), the rewritten
                                      XML (xml_rewrite.py); plan_json.py turns plans into JSON
                                      and back; auditor.reports.fixplan prints them as text or
                                      JSON
  → journaled execution  execute.py   each step idempotent; journal.py records them;
                                      domain_lock.py (a flock per domain) keeps two fixes off
                                      one domain; image_hold.py (QEMU's own image lock) keeps
                                      QEMU from writing the originals; images.py runs qemu-img;
                                      faults.py marks where only the tests can stop or kill it
  → verification                      qemu-img compare of every new image before any metadata
                                      moves, then the result read back from libvirt
orchestrate.py runs them from start to end, for auditor.cli.fix (`snapaudit fix`) to print.

Original images are only ever opened read-only, so a rollback never copies data back.
"""
