"""This user's private directories for what a daemon's processes share on one host: the processors' shared
rate-limit buckets (``ratelimit``) and the zygote's socket (``shard``, ``zygote``).

A file there is trusted by every processor of the user (a socket to fork from, a bucket to draw from), so the
directory must be this user's alone: created 0700, and refused if it is a link, another user's, or open to
anyone else. Standard library only (``os``, ``stat``): the shard shim imports it, and every import of the shim
is paid by every shard.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_directory(name: str) -> Path:
    """``replicator-<name>-<uid>`` in XDG_RUNTIME_DIR, else TMPDIR, else /tmp, created 0700 if missing.

    Raises OSError if it is not a directory owned by this user that no one else may use."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp")
    path = base / f"replicator-{name}-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{path} is not a private directory of this user (a directory owned by uid "
                      f"{os.getuid()} that no one else may use)")
    return path
