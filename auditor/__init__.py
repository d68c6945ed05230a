"""snapaudit: compliance auditor for libvirt VM snapshots."""

__version__ = "0.1.0"
