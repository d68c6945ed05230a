"""The qemu.conf both the private libvirtd and the embedded driver run with."""

from pathlib import Path

# A container has no usable cgroups, namespaces or security labels, and virtlogd is optional:
# stdio_handler "file" lets QEMU write its log itself.
QEMU_CONF = """\
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""


def write_qemu_conf(etc_dir: Path) -> Path:
    etc_dir.mkdir(parents=True, exist_ok=True)
    path = etc_dir / "qemu.conf"
    path.write_text(QEMU_CONF)
    return path
