"""QEMU disk images: qcow2's tables read natively, and QEMU's own tools (qemu-img, qemu-nbd).
Shared by the file checks of an audit and by fix mode."""
