"""A libvirt host over a read-only connection: its capabilities, domains and snapshot XML,
many hosts at once, each within its time."""
