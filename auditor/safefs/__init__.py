"""Writing files safely as root: reports, baselines, journals and new images.

Every writer goes through here, so that each rule is written and tested once:
- a regular file or a new path is replaced atomically (by a temporary file beside it, which
  has no name until it is complete, so that a killed run leaves nothing behind);
- a character device, our own FIFO or standard output is written straight through, never
  replaced (a FIFO planted where root writes would hand its maker the report, or hang us);
- a path is walked from / one component at a time (chase.py): every directory on the way
  must belong to root or the invoking user and be writable by nobody else (sticky ones, like
  /tmp, are walked only into entries of theirs), a symlink is followed only when it belongs
  to one of them, and the write goes through the directory descriptor that was checked;
- a symlink is never replaced;
- a new file gets 0666 & ~umask, a replaced one keeps its mode and owner when root or the
  invoking user owns it, set on the file descriptor (a path can be swapped between two
  calls, a descriptor cannot); another user's file at the name is replaced by a new one;
- files that must not clobber anything are renamed into place with RENAME_NOREPLACE.
"""

from auditor.safefs.atomic import (
    WriteError,
    attempt,
    output_problem,
    rename_noreplace,
    untrusted_directory,
    write_file,
)
from auditor.safefs.chase import Untrusted, chase, not_ours, trusted_uids
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
    "Untrusted",
    "WriteError",
    "append_file",
    "attempt",
    "chase",
    "create_file",
    "not_ours",
    "output_problem",
    "remove_private_dir",
    "rename_noreplace",
    "trusted_uids",
    "untrusted_directory",
    "write_file",
]
