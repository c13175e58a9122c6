"""A path's stop record: why a path stopped by itself, kept where `replicator status` finds it.

When a record processor meets a non-retryable error (its destination deleted, access denied) its path stops
alone and without a checkpoint; the daemon's other paths go on. `status` reads the lease table, which says
only that the shards are no longer renewed, so the processor also writes one small file beside the path's
properties file, ``<file>.stopped`` (JSON: when, which shard, the reason). It is beside the properties file,
and not in a runtime directory, because the daemon (under supervisord, say) and a person running `status`
have different environments but name the same properties file. Starting the path again removes it.

It is a file of the host that ran the path: `status --properties FILE` on another host does not see it.
The record is private (0600), since an error message may quote an item.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from replicator import log
from replicator.files import private_file

_log = log.get("replicator.kcl.stopped")

SUFFIX = ".stopped"


def record_path(properties: Path) -> Path:
    """``orders.properties`` → ``orders.properties.stopped``: never itself a ``*.properties`` path file."""
    return properties.with_name(properties.name + SUFFIX)


def record(properties: Path, reason: str, shard: str) -> None:
    """Write the stop record, replacing an older one. A failure to write it is logged, never raised: the
    processor is stopping for another reason, which must not be hidden."""
    target = record_path(properties)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    content = {"stopped_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "shard": shard,
               "reason": reason, "host": socket.gethostname(), "pid": os.getpid()}
    try:
        partial.unlink(missing_ok=True)
        with os.fdopen(private_file(partial), "w", encoding="utf-8") as out:
            json.dump(content, out)
        os.replace(partial, target)
    except OSError as exc:
        _log.warning("stop_record_not_written", file=str(target), error=str(exc))


def clear(properties: Path) -> None:
    """The path starts again: its old stop record no longer applies."""
    try:
        record_path(properties).unlink(missing_ok=True)
    except OSError as exc:
        _log.warning("stop_record_not_removed", file=str(record_path(properties)), error=str(exc))


def read(properties: Path) -> dict[str, Any] | None:
    """The path's stop record, or None if it has none (or it cannot be read)."""
    try:
        data = json.loads(record_path(properties).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "reason" in data else None
