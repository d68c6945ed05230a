"""Writing files safely as root: reports, baselines, journals and new images.

Every writer goes through here, so that each rule is written and tested once:
- a regular file or a new path is replaced atomically (by a temporary file beside it, which
  has no name until it is complete, so that a killed run leaves nothing behind);
- a character device, our own FIFO or standard output is written straight through, never
  replaced (a FIFO planted where root writes would hand its maker the report, or hang us);
- a symlink is never replaced: it is followed only when it and its directory belong to root
  or the invoking user (a link planted in /tmp must not redirect root's write);
- a new file gets 0666 & ~umask, a replaced one keeps its mode and owner, set on the file
  descriptor (a path can be swapped between two calls, a descriptor cannot);
- files that must not clobber anything are renamed into place with RENAME_NOREPLACE.
"""

from auditor.safefs.atomic import (
    WriteError,
    attempt,
    output_problem,
    rename_noreplace,
    trusted_uids,
    untrusted_directory,
    write_file,
)
from auditor.safefs.exclusive import (
    FileStamp,
    PrivateDir,
    append_file,
    create_file,
    remove_private_dir,
)

__all__ = [
    "FileStamp",
    "PrivateDir",
    "WriteError",
    "append_file",
    "attempt",
    "create_file",
    "output_problem",
    "remove_private_dir",
    "rename_noreplace",
    "trusted_uids",
    "untrusted_directory",
    "write_file",
]
