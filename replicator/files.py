"""Files the tools write: created private, and checked writable before any other step.

A backup's segments, its markers and manifest, and the state files of copy-table and restore-table hold
the table's data (a state file holds its keys), so each is created 0600, never through the umask. A
command that will write a file checks first that it can, by creating and removing a probe file where the
file will go: a permission check (``os.access``) is no answer for root, who passes it everywhere, or on a
read-only filesystem. So a refused command has written nothing, neither a table nor a file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from replicator.errors import ReplicatorError


def private_file(path: Path) -> int:
    """A new file only its owner can read and write (0600), opened for writing: its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def probe_directory(directory: Path) -> None:
    """Raise OSError unless a file can be created in ``directory`` (created and removed at once)."""
    probe = directory / f".write-probe-{uuid.uuid4().hex[:8]}"
    os.close(private_file(probe))
    probe.unlink()


def check_writable(path: Path, option: str, *, create_dirs: bool) -> None:
    """One line naming ``option`` unless the file ``path`` can be written, changing nothing. With
    ``create_dirs`` its missing folders will be made, so the nearest one that exists is probed."""
    if path.is_dir():
        raise ReplicatorError(f"{option} {path} is a directory: give a file, e.g. {path / 'file'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ReplicatorError(f"{option} {path} is not writable: fix its permissions, or choose another file")
    where = path.parent
    if create_dirs:
        while not where.exists() and where != where.parent:
            where = where.parent
    if not where.is_dir():
        raise ReplicatorError(f"{option} {path} cannot be written: {where} is not a directory; choose another "
                              "place, or create the directory")
    try:
        probe_directory(where)
    except OSError as exc:
        raise ReplicatorError(f"{option} {path} cannot be written: {exc.strerror} in {where}; choose another "
                              "place, or fix its permissions") from None
