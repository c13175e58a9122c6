"""Trains the daemon's class archive: a real start of a table path and a Kinesis path on the local server.

Why: most of a JVM's start-up is loading and verifying classes, and the daemon loads some ten thousand (the
AWS SDK, Netty, KCL, the adapter) before its first record. Java's class data sharing maps them ready-made
from an archive instead; measured with AWS's KCL settings, a restarted path replicated its first item 1.2 s
sooner (4.8 s to 3.6 s, README "Start-up"). A dynamic archive holds the classes one JVM run loaded, so this
runs the daemon as a user would (both kinds of path in one JVM, one record through each, a graceful stop),
with ``-XX:ArchiveClassesAtExit``; the JVM writes the archive as it exits.

The archive is written beside a temporary name, then moved into place, so a daemon starting meanwhile finds
the old one or the new one whole. The JVM checks it at every start (same JVM build, same jars, sizes and
times) and runs without it, saying so, if it does not match; ``make setup`` rebuilds it with the jar.

Run: ``python -m replicator.local.class_archive`` (``make setup`` does; so does the image's build).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from replicator.changes.binlog import BinlogProducer
from replicator.changes.codec import encode_item
from replicator.kcl import launcher
from replicator.kcl.launcher import class_archive, spawn_daemon, stop_daemon
from replicator.local.sandbox import LOCAL_KCL_SETTINGS, Sandbox
from replicator.local.workload import create_table

TIMEOUT_S = 180.0
KEY_SCHEMA = (("pk", "S"), ("sk", "N"))


class TrainingFailed(Exception):
    """The training run did not replicate both records or did not stop cleanly; its log says why."""


def train(output: Path, workdir: Path) -> None:
    """Runs the daemon on a table path and a Kinesis path until each replicated a record; writes ``output``."""
    with Sandbox(workdir, source_table="training", destination_table="training-kinesis-replica",
                 kinesis_stream="training-stream", path_settings={"source_format": "binlog"}) as sandbox:
        table_path = sandbox.path.model_copy(update={
            "source_kinesis_stream": None, "source_format": None, "destination_table": "training-replica"})
        create_table(sandbox.destination, table_path.destination_table, None)
        table_properties = workdir / "table.properties"
        table_path.write_properties(table_properties, extra=LOCAL_KCL_SETTINGS)

        key = {"pk": {"S": "training"}, "sk": {"N": "0"}}
        sandbox.source.put_item(TableName=sandbox.source_table, Item=key)
        BinlogProducer(sandbox.kinesis, sandbox.kinesis_stream, KEY_SCHEMA).put_actions(
            [{"Action": "PutItem", "Data": encode_item(key)}])

        partial = output.with_name(f".{output.name}.{os.getpid()}")
        log = open(workdir / "daemon.log", "ab")
        proc = spawn_daemon(sandbox.properties, log, env={
            **sandbox.env, "JAVA_TOOL_OPTIONS": f"-XX:ArchiveClassesAtExit={partial}"},
            options=("--properties", str(sandbox.properties), "--properties", str(table_properties)))
        try:
            started = time.monotonic()
            waiting = {table_path.destination_table, sandbox.destination_table}
            while waiting:
                if proc.poll() is not None or time.monotonic() - started > TIMEOUT_S:
                    raise TrainingFailed(f"the daemon replicated nothing into {sorted(waiting)}")
                waiting = {t for t in waiting if "Item" not in sandbox.destination.get_item(
                    TableName=t, Key=key, ConsistentRead=True)}
                time.sleep(0.1)
        finally:
            status = stop_daemon(proc)
        if status != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            raise TrainingFailed(f"the daemon exited {status} without writing its class archive")
        partial.chmod(0o644)
        os.replace(partial, output)


def main() -> int:
    output = class_archive()
    if output is None:
        print(f"error: {launcher.CLASS_ARCHIVE_ENV}=none: name the archive to train, or unset it",
              file=sys.stderr)
        return 2
    # A start with the old archive would write an archive on top of it: train without one.
    output.unlink(missing_ok=True)
    for attempt in (1, 2):  # once more on a fresh server, should the machine have stalled the first run
        workdir = Path(tempfile.mkdtemp(prefix="class-archive-"))
        try:
            train(output, workdir)
            break
        except TrainingFailed as e:
            print(f"{'error' if attempt == 2 else 'warning'}: could not train the daemon's class archive: {e}; "
                  f"see the logs in {workdir} (the daemon runs without it, only slower to start)", file=sys.stderr)
    else:
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"class archive: {output} ({output.stat().st_size // 2**20} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
