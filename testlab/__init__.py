"""Real hypervisor state for tests and benchmarks: a private libvirtd, the embedded QEMU
driver, disk images and VMs with snapshots, all under a directory the caller owns.

Development-only (not shipped in the wheel). Needs root, libvirt and QEMU.
"""
