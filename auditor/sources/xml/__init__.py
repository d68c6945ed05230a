"""libvirt's XML into the model: snapshots, domain disks and what their sources name. XML comes
from hosts and is untrusted."""
