"""Start-up of several paths in one daemon against one path, on the local server, in one run.

For N paths (1, 4, then 16: table paths, each with one item already written to its source), the daemon is started
with ``replicator run --properties-dir`` on a fresh directory of new paths, and timed from the start to
the first item visible in each path's replica; printed: the slowest path's time (the daemon's start-up for
N paths) and the ratio to one path's. The paths are new (fresh lease tables). Each count is measured with
the local trial's KCL timings (``LOCAL_KCL_SETTINGS``) and with KCL's defaults, AWS's own settings (no
``--kcl-property``), since a local figure alone would hide what a user on AWS waits for.

Run: `.venv/bin/python -m bench.paths [--counts 1 4 16]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from replicator.kcl.config import ReplicationPath
from replicator.kcl.launcher import spawn_daemon, stop_daemon
from replicator.local.sandbox import DESTINATION_REGION, LOCAL_KCL_SETTINGS, SOURCE_REGION, Sandbox
from replicator.local.workload import FIRST_REPLICATION_TIMEOUT_S, create_table

KEY = {"pk": {"S": "first"}, "sk": {"N": "0"}}


def start_up(sandbox: Sandbox, workdir: Path, count: int, settings: dict[str, str], run: str) -> float:
    """Seconds from `replicator run --properties-dir` to the first item of every one of ``count`` new paths."""
    paths_dir = workdir / f"paths-{run}"
    paths_dir.mkdir()
    tables = [f"{run}-{n}" for n in range(count)]
    for table in tables:
        create_table(sandbox.source, table)
        create_table(sandbox.destination, f"{table}-replica", None)
        sandbox.source.put_item(TableName=table, Item={**KEY, "v": {"S": table}})
        path = ReplicationPath(source_region=SOURCE_REGION, source_table=table,
                               source_endpoint=sandbox.source_server.endpoint, destination_region=DESTINATION_REGION,
                               destination_table=f"{table}-replica", destination_endpoint=sandbox.destination_server.endpoint,
                               dont_publish_cloudwatch=True)
        path.write_properties(paths_dir / f"{table}.properties", extra=settings)
    started = time.monotonic()
    proc = spawn_daemon(Path(), open(workdir / f"daemon-{run}.log", "ab"), options=("--properties-dir", str(paths_dir)))
    pending = set(tables)
    try:
        while pending:
            if proc.poll() is not None or time.monotonic() - started > FIRST_REPLICATION_TIMEOUT_S:
                raise RuntimeError(f"{run}: paths {sorted(pending)} did not replicate; see {workdir}")
            pending = {t for t in pending if "Item" not in sandbox.destination.get_item(
                TableName=f"{t}-replica", Key=KEY, ConsistentRead=True)}
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop_daemon(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp) / "sandbox") as sandbox:
        rows = []
        for label, settings in (("local trial timings", LOCAL_KCL_SETTINGS), ("AWS defaults", {})):
            baseline = None
            for count in args.counts:
                seconds = start_up(sandbox, Path(tmp), count, settings, f"{'local' if settings else 'aws'}{count}")
                baseline = baseline or seconds
                rows.append((label, count, seconds, seconds / baseline))
                print(f"{label}: {count} path(s): {seconds:.1f} s to every path's first item", flush=True)
        print("\n| KCL timings | paths in one daemon | run to every path's first item | vs one path |")
        print("|---|---|---|---|")
        for label, count, seconds, ratio in rows:
            print(f"| {label} | {count} | {seconds:.1f} s | {ratio:.2f} |")


if __name__ == "__main__":
    main()
