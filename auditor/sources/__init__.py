"""Where a scan's facts come from: libvirt connections, XML parsing, and the files
snapshots name."""

import libvirt

# libvirt prints every error to stderr unless a handler is registered; snapaudit reports
# errors through exceptions instead, as one line. Set here, once, for every module that
# talks to libvirt: each imports something from this package.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
