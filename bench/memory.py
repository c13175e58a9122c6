"""Memory of running paths: PSS summed over the JVM and every processor, against baselines from the same run.

PSS (proportional set size, ``/proc/PID/smaps_rollup``) charges each process its private pages plus its
share of the pages it shares, so summing it over processes counts every page once: the honest total of
several processes that share libraries, a JVM's or the processors' forked from one zygote. Every process in
a daemon's process group is counted (``replicator run`` execs Java; the processors, their shims and the
zygote are in Java's group), once the path has replicated a first item and every shard has its processor.

(a) One binlog Kinesis path with 1, 8 and 32 shards (a stream of N shards on the local server), with the
    processors forked from the zygote (``replicator-processor`` as shipped) and, as the baseline, each built
    in its own process (``REPLICATOR_ZYGOTE=off``, the processor as it was). Printed: the total, the
    processors' part per shard (everything but the JVM, over N) and the ratio zygote / own process.
(b) 1, 4 and 16 table paths as separate daemons (one JVM each), all on one local server, each way again.
(c) The same 1, 4 and 16 paths in one daemon, ``replicator run --properties-dir DIR``, against (b) run the
    cheaper way (a table path has one shard here, where the zygote costs more than it saves). When this
    tree's ``run`` has no ``--properties-dir``, (c) is not measured and the run says so on a line of its own.

The paths run with the local trial's shortened KCL timings (``LOCAL_KCL_SETTINGS``), which change how soon
processors start, not what they hold. A PNG of the curves goes to ``--chart`` (``bench/results/memory.png``).

Run: `.venv/bin/python -m bench.memory [--shards 1,8,32] [--paths 1,4,16]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import print_summary
from replicator.kcl.config import ReplicationPath
from replicator.kcl.launcher import stop_daemon
from replicator.local.sandbox import DESTINATION_REGION, LOCAL_KCL_SETTINGS, SOURCE_REGION
from replicator.local.server import LocalServer, use_local_credentials
from replicator.local.workload import create_table

CHART = Path(__file__).parent / "results" / "memory.png"
READY_TIMEOUT_S = 600.0
SETTLE_S = 5.0
"""After the last processor has started: KCL's first lease renewals and metrics, the processors' first batch."""


@dataclass(frozen=True)
class Usage:
    """PSS in MiB of one daemon's process group, split into the JVM and everything else (the processors)."""

    jvm: float
    processors: float
    processes: int

    @property
    def total(self) -> float:
        return self.jvm + self.processors

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.jvm + other.jvm, self.processors + other.processors, self.processes + other.processes)


def pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live process in process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append((int(stat.parent.name), name))
    return members


def processors_started(logs: list[Path]) -> int:
    """Processors that have answered their shard's initialize (each logs ``shard_started`` once built, its
    imports and clients done): a process merely spawned would be measured half-loaded."""
    return sum(log.read_text(errors="replace").count('"shard_started"') for log in logs)


def usage(pgid: int) -> Usage:
    jvm = processors = 0.0
    members = group_members(pgid)
    for pid, name in members:
        if name == "java":
            jvm += pss_mib(pid)
        else:
            processors += pss_mib(pid)
    return Usage(jvm, processors, len(members))


def spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    replicator = Path(sys.executable).parent / "replicator"
    out = open(log, "ab")
    return subprocess.Popen([str(replicator), "run", *args], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)


def wait_ready(procs: list[subprocess.Popen[bytes]], logs: list[Path], replicated: Callable[[], bool],
               processors: int, what: str) -> None:
    """Until every path has replicated its first item and ``processors`` processors have started in all."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what}: a daemon exited with status {[p.poll() for p in procs]}")
        running = processors_started(logs)
        if running >= processors and replicated():
            time.sleep(SETTLE_S)
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {running} of {processors} processors after {READY_TIMEOUT_S:.0f} s")
        time.sleep(1.0)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:  # all at once: each stop waits for a graceful lease hand-back
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        stop_daemon(proc, timeout_s=60)


class World:
    """One local server for the whole run; every path gets tables (or a stream) of its own."""

    def __init__(self, workdir: Path) -> None:
        use_local_credentials()
        self.workdir = workdir
        self.server = LocalServer(log_path=workdir / "local-server.log").start()
        self.source = self.server.client(SOURCE_REGION)
        self.destination = self.server.client(DESTINATION_REGION)
        self.kinesis = self.server.client(SOURCE_REGION, "kinesis")
        self._names = 0

    def name(self, kind: str) -> str:
        self._names += 1
        return f"mem-{kind}-{self._names}"

    def table_path(self) -> tuple[ReplicationPath, str]:
        source, destination = self.name("src"), self.name("dst")
        create_table(self.source, source, "NEW_AND_OLD_IMAGES")
        create_table(self.destination, destination, None)
        self.source.put_item(TableName=source, Item={"pk": {"S": "probe"}, "sk": {"N": "0"}})
        return self._path(source_table=source, destination_table=destination), destination

    def kinesis_path(self, shards: int) -> tuple[ReplicationPath, str]:
        from replicator.changes.binlog import BinlogProducer
        from replicator.changes.codec import encode_item

        stream, destination = self.name("stream"), self.name("dst")
        self.kinesis.create_stream(StreamName=stream, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
        create_table(self.destination, destination, None)
        BinlogProducer(self.kinesis, stream, (("pk", "S"), ("sk", "N"))).put_actions(
            [{"Action": "PutItem", "Data": encode_item({"pk": {"S": "probe"}, "sk": {"N": "0"}})}])
        return self._path(source_kinesis_stream=stream, source_format="binlog", destination_table=destination), destination

    def _path(self, **names: Any) -> ReplicationPath:
        return ReplicationPath(source_region=SOURCE_REGION, source_endpoint=self.server.endpoint,
                               destination_region=DESTINATION_REGION, destination_endpoint=self.server.endpoint,
                               dont_publish_cloudwatch=True, idle_time_between_reads_millis=1000, **names)

    def write(self, path: ReplicationPath, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        file = directory / f"{path.application_name}.properties"
        path.write_properties(file, extra=LOCAL_KCL_SETTINGS)
        return file

    def replicated(self, destinations: list[str]) -> Callable[[], bool]:
        return lambda: all(int(self.destination.describe_table(TableName=d)["Table"]["ItemCount"]) >= 1
                           for d in destinations)

    def stop(self) -> None:
        self.server.stop()


def measure_kinesis(world: World, shards: int, zygote: bool) -> Usage:
    path, destination = world.kinesis_path(shards)
    file = world.write(path, world.workdir / f"kinesis-{shards}-{'zygote' if zygote else 'own'}")
    env = {**os.environ, "REPLICATOR_ZYGOTE": "on" if zygote else "off"}
    proc = spawn(["--properties", str(file)], file.with_suffix(".log"), env)
    try:
        wait_ready([proc], [file.with_suffix(".log")], world.replicated([destination]), shards,
                   f"Kinesis path, {shards} shards")
        return usage(proc.pid)
    finally:
        stop_all([proc])


def measure_separate(world: World, count: int, zygote: bool) -> Usage:
    made = [world.table_path() for _ in range(count)]
    directory = world.workdir / f"separate-{count}-{'zygote' if zygote else 'own'}"
    env = {**os.environ, "REPLICATOR_ZYGOTE": "on" if zygote else "off"}
    logs = [directory / f"daemon-{i}.log" for i in range(count)]
    procs = [spawn(["--properties", str(world.write(path, directory))], log, env) for (path, _), log in zip(made, logs)]
    try:
        wait_ready(procs, logs, world.replicated([d for _, d in made]), count, f"{count} separate daemons")
        total = Usage(0.0, 0.0, 0)
        for proc in procs:
            total = total + usage(proc.pid)
        return total
    finally:
        stop_all(procs)


def has_properties_dir() -> bool:
    replicator = Path(sys.executable).parent / "replicator"
    help_text = subprocess.run([str(replicator), "run", "--help"], capture_output=True, text=True).stdout
    return "--properties-dir" in help_text


def measure_one_daemon(world: World, count: int) -> Usage:
    made = [world.table_path() for _ in range(count)]
    directory = world.workdir / f"one-daemon-{count}"
    for path, _ in made:
        world.write(path, directory)
    log = world.workdir / f"one-daemon-{count}.log"
    proc = spawn(["--properties-dir", str(directory)], log, dict(os.environ))
    try:
        wait_ready([proc], [log], world.replicated([d for _, d in made]), count, f"{count} paths in one daemon")
        return usage(proc.pid)
    finally:
        stop_all([proc])


def draw(path: Path, shards: dict[int, tuple[Usage, Usage]], separate: dict[int, tuple[Usage, Usage]],
         together: dict[int, Usage]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    xs = sorted(shards)
    left.plot(xs, [shards[n][0].total for n in xs], "o-", label="processors forked from the zygote")
    left.plot(xs, [shards[n][1].total for n in xs], "s--", label="each processor in its own process (before)")
    left.set_xlabel("shards of one Kinesis path")
    left.set_ylabel("PSS, JVM + processors (MiB)")
    left.set_title("One path, more shards")
    xs = sorted(separate)
    right.plot(xs, [separate[n][0].total for n in xs], "o--", label="one daemon per path, zygote")
    right.plot(xs, [separate[n][1].total for n in xs], "s--", label="one daemon per path, processors in their own process")
    if together:
        right.plot(sorted(together), [together[n].total for n in sorted(together)], "o-", label="all paths in one daemon")
    right.set_xlabel("table paths (one shard each)")
    right.set_title("More paths" + ("" if together else " (one daemon: not measured)"))
    for axis in (left, right):
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left")
    figure.suptitle("Memory of running paths on the local server (PSS summed over every process)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="1,8,32")
    parser.add_argument("--paths", default="1,4,16")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args()
    shard_counts = [int(n) for n in args.shards.split(",") if n]
    path_counts = [int(n) for n in args.paths.split(",") if n]
    shards: dict[int, tuple[Usage, Usage]] = {}
    separate: dict[int, tuple[Usage, Usage]] = {}
    together: dict[int, Usage] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        world = World(Path(tmp))
        try:
            for n in shard_counts:
                shards[n] = (measure_kinesis(world, n, zygote=True), measure_kinesis(world, n, zygote=False))
            for n in path_counts:
                separate[n] = (measure_separate(world, n, zygote=True), measure_separate(world, n, zygote=False))
            if has_properties_dir():
                for n in path_counts:
                    together[n] = measure_one_daemon(world, n)
        finally:
            world.stop()
    rows = []
    for n, (forked, own) in shards.items():
        rows.append((f"(a) Kinesis, {n} shards: PSS total", f"{forked.total:.0f} MiB",
                     f"own processes {own.total:.0f} MiB (ratio {forked.total / own.total:.2f})"))
        rows.append((f"(a) Kinesis, {n} shards: processors per shard", f"{forked.processors / n:.1f} MiB",
                     f"own processes {own.processors / n:.1f} MiB (ratio {forked.processors / own.processors:.2f}); goal <= 30"))
        rows.append((f"(a) Kinesis, {n} shards: JVM", f"{forked.jvm:.0f} MiB", f"own processes {own.jvm:.0f} MiB"))
    for n, (forked, own) in separate.items():
        rows.append((f"(b) {n} table paths, separate daemons", f"{forked.total:.0f} MiB",
                     f"JVMs {forked.jvm:.0f} MiB, processors {forked.processors:.0f} MiB; processors in their own "
                     f"process {own.total:.0f} MiB (ratio {forked.total / own.total:.2f})"))
        if n in together:
            apart = min(forked.total, own.total)  # the cheaper way to run them apart is the fair baseline
            rows.append((f"(c) {n} table paths, one daemon", f"{together[n].total:.0f} MiB",
                         f"separate daemons {apart:.0f} MiB (ratio {together[n].total / apart:.2f}; goal <= 0.25 at 16)"))
    print_summary("Memory, PSS summed over the JVM and every processor (local server, local KCL timings)", rows)
    if not together:
        print("(c) NOT MEASURED: this tree's `replicator run` has no --properties-dir yet (several paths in one "
              "daemon); rerun `python -m bench.memory` where it has")
    print(f"chart: {draw(args.chart, shards, separate, together)}")


if __name__ == "__main__":
    main()
