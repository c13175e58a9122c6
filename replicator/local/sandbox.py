"""A replication path between two regions of the local server.

The demo, the end-to-end tests and the benchmarks all run the real chain through it: moto's DynamoDB and
its stream in us-east-1, the adapter, KCL 3, our amazon-kclpy processor, moto's DynamoDB in eu-west-1. One
server holds both regions, as one AWS endpoint per region would; a test that needs the destination alone to
fail asks for a second server for it. The sandbox starts the server(s), creates the tables, writes the
path's properties file (with KCL timings shortened for a local trial) and runs
``replicator run --properties`` as a child process in its own session, so a test can stop it with
SIGTERM, or kill its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator.tables.compare import TableDiff, compare_tables
from replicator.kcl.config import ReplicationPath
from replicator.kcl.launcher import spawn_daemon, stop_daemon
from replicator.local.server import LocalServer, use_local_credentials
from replicator.local.workload import create_table

def boto3_session(env: dict[str, str]) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                 aws_session_token=env.get("AWS_SESSION_TOKEN"))


SOURCE_REGION = "us-east-1"
DESTINATION_REGION = "eu-west-1"
SOURCE_ACCOUNT = "111111111111"
DESTINATION_ACCOUNT = "222222222222"
DESTINATION_ROLE = "replicator-writer"
DESTINATION_EXTERNAL_ID = "replicator-sandbox"

# KCL 3's defaults suit a fleet that runs for months (worker metrics every 30 s, lease assignment every
# 20 s); a local trial shortens them so that a new worker starts within seconds (README, "Start-up").
LOCAL_KCL_SETTINGS = {
    "inMemoryWorkerMetricsCaptureFrequencyMillis": "250",
    "workerMetricsReporterFreqInMillis": "500",
    "leaseAssignmentIntervalMillis": "500",
    "shardConsumerDispatchPollIntervalMillis": "100",  # our launcher's own key
    "shardSyncIntervalMillis": "10000",
    # A killed leader's lock is released after this long (the launcher's minimum), not 150 s.
    "staleLeaderLockMillis": "45000",
}


@dataclass
class Sandbox:
    workdir: Path
    source_table: str = "orders"
    destination_table: str = "orders-replica"
    separate_destination: bool = False
    """Serve the destination region from a server of its own, so that a test can make it fail alone."""
    path_settings: dict[str, Any] = field(default_factory=dict)
    kinesis_stream: str | None = None
    """Make a Kinesis path instead: this stream (created with ``kinesis_shards``) in the source region,
    read in ``path_settings["source_format"]``; the source table is still made, for the test to write."""
    kinesis_shards: int = 2
    source_stream_view: str = "NEW_AND_OLD_IMAGES"
    """The source table's StreamViewType: KEYS_ONLY or OLD_IMAGE make the path read its items through."""
    cross_account: bool = False
    """Source (and lease table) in account SOURCE_ACCOUNT, replica in DESTINATION_ACCOUNT, reached through
    the role DESTINATION_ROLE there (``local.accounts``): the daemon runs with the source account's
    credentials and the path's destinationRoleArn."""

    def __post_init__(self) -> None:
        use_local_credentials()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.source_server = LocalServer(log_path=self.workdir / "local-server.log")
        self.destination_server = (
            LocalServer(log_path=self.workdir / "local-server-destination.log")
            if self.separate_destination else self.source_server
        )
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        """Added to the daemon's environment: the source account's credentials, in a cross-account sandbox."""

    @property
    def servers(self) -> list[LocalServer]:
        if self.destination_server is self.source_server:
            return [self.source_server]
        return [self.source_server, self.destination_server]

    def start(self) -> "Sandbox":
        for server in self.servers:
            server.start()
        self.source = self.source_server.client(SOURCE_REGION)
        self.destination = self.destination_server.client(DESTINATION_REGION)
        if self.cross_account:
            self._in_accounts()
        create_table(self.source, self.source_table, self.source_stream_view)
        create_table(self.destination, self.destination_table, None)
        source: dict[str, Any] = {"source_table": self.source_table}
        if self.kinesis_stream is not None:
            self.kinesis = self.source_server.client(SOURCE_REGION, "kinesis")
            self.kinesis.create_stream(StreamName=self.kinesis_stream, ShardCount=self.kinesis_shards)
            self.kinesis.get_waiter("stream_exists").wait(StreamName=self.kinesis_stream,
                                                           WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
            source["source_kinesis_stream"] = self.kinesis_stream
        self.path = ReplicationPath(
            source_region=SOURCE_REGION,
            **source,
            source_endpoint=self.source_server.endpoint,
            destination_region=DESTINATION_REGION,
            destination_table=self.destination_table,
            destination_endpoint=self.destination_server.endpoint,
            **self._role_settings(),
            **self._settings(),
        )
        self.properties = self.workdir / "path.properties"
        self.path.write_properties(self.properties, extra=LOCAL_KCL_SETTINGS)
        return self

    def _in_accounts(self) -> None:
        """The source's clients with the source account's credentials, the destination's through the role."""
        from replicator.local import accounts

        self.env = accounts.account_credentials(self.source_server.endpoint, SOURCE_ACCOUNT)
        # Roles are assumed at AWS_ENDPOINT_URL_STS, never at a side's endpoint (``credentials``): the server
        # that holds the destination's role (one server answers STS for both accounts unless separated).
        self.env["AWS_ENDPOINT_URL_STS"] = self.destination_server.endpoint
        self.role_arn = accounts.create_role(self.destination_server.endpoint, DESTINATION_ACCOUNT, DESTINATION_ROLE,
                                             SOURCE_ACCOUNT, external_id=DESTINATION_EXTERNAL_ID)
        self.source = self.client_with(self.env, self.source_server.endpoint, SOURCE_REGION)
        base = boto3_session(self.env)
        sts = base.client("sts", region_name=DESTINATION_REGION, endpoint_url=self.destination_server.endpoint)
        issued = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="sandbox",
                                 ExternalId=DESTINATION_EXTERNAL_ID)["Credentials"]
        self.destination_env = {"AWS_ACCESS_KEY_ID": issued["AccessKeyId"],
                                "AWS_SECRET_ACCESS_KEY": issued["SecretAccessKey"],
                                "AWS_SESSION_TOKEN": issued["SessionToken"]}
        self.destination = self.client_with(self.destination_env, self.destination_server.endpoint, DESTINATION_REGION)

    @staticmethod
    def client_with(env: dict[str, str], endpoint: str, region: str, service: str = "dynamodb") -> Any:
        """A client of the local server with the credentials in ``env`` (as the variables name them)."""
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "total_max_attempts": 3}, max_pool_connections=32)
        return boto3_session(env).client(service, region_name=region, endpoint_url=endpoint, config=config)

    def _role_settings(self) -> dict[str, Any]:
        if not self.cross_account:
            return {}
        return {"destination_role_arn": self.role_arn, "destination_external_id": DESTINATION_EXTERNAL_ID}

    def _settings(self) -> dict[str, Any]:
        """The local trial's defaults under the given path_settings. Metrics are off unless asked for, and
        then go to the source's local server unless another CloudWatch endpoint is given."""
        settings = {"dont_publish_cloudwatch": True, "parent_shard_poll_interval_millis": 1000,
                    "idle_time_between_reads_millis": 200, **self.path_settings}
        if not settings["dont_publish_cloudwatch"]:
            settings.setdefault("cloudwatch_endpoint", self.source_server.endpoint)
        return settings

    def start_daemon(self, properties: Path | None = None) -> subprocess.Popen[bytes]:
        """A worker of the path, from the sandbox's properties file or from another one (same taskName)."""
        out = open(self.workdir / f"daemon-{len(self.daemons)}.log", "ab")
        proc = spawn_daemon(properties or self.properties, out, env=self.env)
        self.daemons.append(proc)
        return proc

    def start_lambda_local(self, *options: str) -> subprocess.Popen[bytes]:
        """The Lambda handler on the source's stream under `replicator lambda-local`, in place of a daemon
        (stopped, watched and logged as one)."""
        out = open(self.workdir / f"daemon-{len(self.daemons)}.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")} | self.env
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "replicator"), "lambda-local",
             "--source-table", self.source_table, "--source-region", SOURCE_REGION,
             "--source-endpoint", self.source_server.endpoint, "--destination-table", self.destination_table,
             "--destination-region", DESTINATION_REGION, "--destination-endpoint", self.destination_server.endpoint,
             *(["--version-attribute", self.path.version_attribute] if self.path.version_attribute else []),
             *options],
            stdout=subprocess.DEVNULL, stderr=out, env=env, start_new_session=True,
        )
        self.daemons.append(proc)
        return proc

    def stop_daemon(self, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
        return stop_daemon(proc, timeout_s)

    def kill_daemon(self, proc: subprocess.Popen[bytes]) -> None:
        """kill -9 of the whole process group: Java and every processor it spawned."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def processor_pids(self, proc: subprocess.Popen[bytes]) -> list[int]:
        """The record processors of the daemon: those its zygote forked (``kcl.zygote``; Java's children are
        then the shards' shims), else Java's own children. The daemon's pid is Java's and its process group."""
        parent_of: dict[int, int] = {}
        is_zygote: dict[int, bool] = {}  # a forked processor keeps the zygote's command line
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                command = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[2]) == proc.pid and fields[0] != "Z":
                pid = int(stat.parent.name)
                parent_of[pid] = int(fields[1])
                is_zygote[pid] = b"replicator.kcl.zygote" in command
        forked = [pid for pid, parent in parent_of.items() if is_zygote[pid] and is_zygote.get(parent, False)]
        return forked or [pid for pid, parent in parent_of.items() if parent == proc.pid]

    def diff(self) -> TableDiff:
        return compare_tables(self.source, self.source_table, self.destination, self.destination_table,
                              self.path.fence_attribute)

    def wait_for_equality(self, timeout_s: float = 180.0, poll_s: float = 1.0) -> TableDiff:
        """Poll until the tables are equal; fail early once no daemon is left running (a test may kill
        one worker of several, and the others carry on)."""
        deadline = time.monotonic() + timeout_s
        diff = self.diff()
        while diff.discrepancies and time.monotonic() < deadline:
            if self.daemons and all(proc.poll() is not None for proc in self.daemons):
                newest = self.daemons[-1]
                raise RuntimeError(f"daemon exited with status {newest.returncode}; see {self.workdir}")
            time.sleep(poll_s)
            diff = self.diff()
        return diff

    def daemon_log(self, index: int = 0) -> str:
        return (self.workdir / f"daemon-{index}.log").read_text(errors="replace")

    def daemon_log_when(self, index: int, ready: Callable[[str], bool], timeout_s: float = 15.0) -> str:
        """The daemon's log once ``ready`` holds for it, or as it is after ``timeout_s``. Java drains each
        processor's stderr into the log on a thread of its own, so a batch can be durable, and seen in the
        destination, a moment before its ``batch_applied`` line is in the file."""
        deadline = time.monotonic() + timeout_s
        text = self.daemon_log(index)
        while not ready(text) and time.monotonic() < deadline:
            time.sleep(0.2)
            text = self.daemon_log(index)
        return text

    def stop(self) -> None:
        for proc in self.daemons:
            if proc.poll() is None:
                self.stop_daemon(proc, timeout_s=30)
        for server in self.servers:
            server.stop()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
