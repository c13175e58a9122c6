"""Start-up of one replication path, new and after a restart, on the local server.

For each path kind (``table``: a DynamoDB stream source; ``kinesis``: a 2-shard Kinesis stream of ``binlog``
records, as bench/kinesis.py feeds it) and each KCL setting (``aws``: no extra KCL property, KCL's defaults,
what a path gets on AWS; ``local``: the local trial's ``LOCAL_KCL_SETTINGS``), two times are taken, in
seconds from starting ``replicator run`` to an item visible in the replica (ConsistentRead GetItem every
50 ms):

1. NEW: a fresh path (its own tables, stream and so lease table and taskName, on a local server of its
   own), one item (one record) written to its source before the daemon starts;
2. RESTART: that daemon is stopped gracefully (SIGTERM: it checkpoints and exits), one probe item (record)
   is written, and the daemon starts again on the same properties.

Each is measured ``--repeat`` times, with the daemon's class archive (``make setup`` trains it; the JVM maps
the daemon's classes from it) and without (``REPLICATOR_CLASS_ARCHIVE=none``), alternately, so that both
see the same machine; printed: the median and the range, against the targets (new <= 10 s, restart <= 5 s),
and the ratio of the start with the archive to the start without. bench/replication.py and bench/paths.py time a new table path with a backlog or several
paths; this is the one figure a user waits for, per kind, with AWS's timings next to the local trial's.

Run: `.venv/bin/python -m bench.startup [--kinds table kinesis] [--settings aws local] [--repeat 3]
[--archives with without]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.kinesis import SCHEMA
from bench.replication import alive
from replicator.changes.binlog import BinlogProducer
from replicator.changes.codec import Item, encode_item
from replicator.kcl.launcher import CLASS_ARCHIVE_ENV, class_archive
from replicator.local.sandbox import LOCAL_KCL_SETTINGS, Sandbox
from replicator.local.workload import FIRST_REPLICATION_TIMEOUT_S

KINDS = ("table", "kinesis")
SETTINGS: dict[str, dict[str, str]] = {"aws": {}, "local": LOCAL_KCL_SETTINGS}
ARCHIVES = ("with", "without")
NEW_TARGET_S = 10.0
RESTART_TARGET_S = 5.0
POLL_S = 0.05


def put(sandbox: Sandbox, name: str) -> Item:
    """Write one item to the path's source (the table, or a binlog PutItem record); return its key."""
    key = {"pk": {"S": name}, "sk": {"N": "0"}}
    item = {**key, "probe": {"BOOL": True}}
    if sandbox.kinesis_stream is None:
        sandbox.source.put_item(TableName=sandbox.source_table, Item=item)
    else:
        BinlogProducer(sandbox.kinesis, sandbox.kinesis_stream, SCHEMA).put_actions(
            [{"Action": "PutItem", "Data": encode_item(item)}])
    return key


def timed_start(sandbox: Sandbox, key: Item, what: str) -> tuple[subprocess.Popen[bytes], float]:
    """Start the path's daemon: (the daemon, seconds from the start to ``key`` visible in the replica)."""
    started = time.monotonic()
    proc = sandbox.start_daemon()
    while "Item" not in sandbox.destination.get_item(TableName=sandbox.destination_table, Key=key,
                                                     ConsistentRead=True):
        if not alive(proc) or time.monotonic() - started > FIRST_REPLICATION_TIMEOUT_S:
            state = "exited" if not alive(proc) else f"ran {FIRST_REPLICATION_TIMEOUT_S:.0f} s"
            raise RuntimeError(f"{what}: the daemon {state} without replicating {key}; see {sandbox.workdir}")
        time.sleep(POLL_S)
    return proc, time.monotonic() - started


def measure(workdir: Path, kind: str, settings: str, archive: str) -> tuple[float, float]:
    """(new s, restart s) of a fresh path of ``kind`` under the KCL ``settings``, ``archive`` or not."""
    name, kinesis = workdir.name, kind == "kinesis"
    with Sandbox(workdir, source_table=name, destination_table=f"{name}-replica",
                 kinesis_stream=f"{name}-stream" if kinesis else None,
                 path_settings={"source_format": "binlog"} if kinesis else {}) as sandbox:
        if archive == "without":
            sandbox.env[CLASS_ARCHIVE_ENV] = "none"
        sandbox.path.write_properties(sandbox.properties, extra=SETTINGS[settings])
        proc, new_s = timed_start(sandbox, put(sandbox, "first"), f"{name}: new path")
        sandbox.stop_daemon(proc)
        proc, restart_s = timed_start(sandbox, put(sandbox, "restart-probe"), f"{name}: restart")
        sandbox.stop_daemon(proc)
        return new_s, restart_s


def spread(samples: list[float]) -> str:
    return f"{statistics.median(samples):.1f} ({min(samples):.1f}–{max(samples):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--archives", nargs="+", choices=ARCHIVES, default=list(ARCHIVES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    archive = class_archive()
    if "with" in args.archives and (archive is None or not archive.is_file()):
        parser.error(f"no class archive at {archive}: run `make setup`, or pass --archives without")
    workdir = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    print(f"workdir (logs): {workdir}", flush=True)
    rows = []
    for kind in args.kinds:
        for settings in args.settings:
            new: dict[str, list[float]] = {a: [] for a in args.archives}
            restart: dict[str, list[float]] = {a: [] for a in args.archives}
            for n in range(args.repeat):
                for archived in args.archives:
                    new_s, restart_s = measure(workdir / f"{kind}-{settings}-{archived}-{n}", kind, settings,
                                               archived)
                    new[archived].append(new_s)
                    restart[archived].append(restart_s)
                    print(f"{kind}, {settings}, {archived} archive #{n}: new {new_s:.1f} s, "
                          f"restart {restart_s:.1f} s", flush=True)
            for archived in args.archives:
                rows.append((kind, settings, archived, spread(new[archived]), spread(restart[archived])))
            if len(args.archives) == 2:
                print(f"{kind}, {settings}: with the archive / without: new "
                      f"{statistics.median(new['with']) / statistics.median(new['without']):.2f}, restart "
                      f"{statistics.median(restart['with']) / statistics.median(restart['without']):.2f}",
                      flush=True)
    print("\n| path | KCL settings | class archive | new, s (median, min–max) | restart, s | target |")
    print("|---|---|---|---|---|---|")
    for kind, settings, archived, new_text, restart_text in rows:
        print(f"| {kind} | {settings} | {archived} | {new_text} | {restart_text} | "
              f"new <= {NEW_TARGET_S:.0f} s, restart <= {RESTART_TARGET_S:.0f} s |")


if __name__ == "__main__":
    main()
