"""Where a scan's facts come from: libvirt connections, XML parsing, and the files
snapshots name."""
