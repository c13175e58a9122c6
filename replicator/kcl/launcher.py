"""The daemon launcher: finds Java and our launcher jar, then runs the KCL MultiLangDaemon for a path.

The Java side (daemon/) is a thin class that wires the DynamoDB Streams Kinesis Adapter's scheduler to
KCL's MultiLang processor factory; everything it needs comes from the path's properties file. The
processor it spawns per shard finds the same file through REPLICATOR_PROPERTIES, and finds the
``replicator-processor`` executable on PATH, to which this module adds our own bin directory.
``REPLICATOR_STREAM_ARN`` names the stream `replicator run` found: Java reads that stream, and the
processors label replication versions with it, so both agree on which stream is replicated.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from replicator.errors import ReplicatorError

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_CLASS = "replicator.daemon.StreamsMultiLangDaemon"


def daemon_dir() -> Path:
    """Where the launcher jar and its dependencies are (daemon/target, or REPLICATOR_DAEMON_HOME)."""
    return Path(os.environ.get("REPLICATOR_DAEMON_HOME", REPO_ROOT / "daemon" / "target"))


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ReplicatorError(
            "java not found: install a Java 17 runtime (e.g. `apt-get install openjdk-17-jre-headless`) "
            "or set JAVA_HOME"
        )
    return found


def classpath() -> str:
    home = daemon_dir()
    jar = home / "replicator-daemon.jar"
    if not jar.is_file() or not (home / "lib").is_dir():
        raise ReplicatorError(f"the launcher is not built ({jar} is missing): run `make setup`")
    return os.pathsep.join([str(jar), str(home / "lib" / "*")])


def command(properties: Path, java: str | None = None, heap: str = "512m") -> list[str]:
    # Our logging configuration under its own name: the MultiLang jar ships a logback.xml as well.
    return [java or find_java(), f"-Xmx{heap}", "-Dlogback.configurationFile=replicator-logback.xml",
            "-cp", classpath(), MAIN_CLASS, str(properties)]


STREAM_ARN_ENV = "REPLICATOR_STREAM_ARN"


def environment(properties: Path, stream_arn: str) -> dict[str, str]:
    env = dict(os.environ)
    env["REPLICATOR_PROPERTIES"] = str(properties.resolve())
    env[STREAM_ARN_ENV] = stream_arn
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def exec_daemon(properties: Path, stream_arn: str) -> None:
    """Replace this process with the daemon, so that supervisord's or Docker's signals reach Java itself."""
    argv = command(properties)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, environment(properties, stream_arn))


def spawn_daemon(properties: Path, output: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """`replicator run --properties FILE` as a child in its own session, so that it can be stopped as a
    process group (used by bootstrap, the demo and the tests)."""
    replicator = Path(sys.executable).parent / "replicator"
    return subprocess.Popen(
        [str(replicator), "run", "--properties", str(properties)],
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
        env=dict(os.environ),
    )


def stop_daemon(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    """SIGTERM, as supervisord or Docker sends it (the daemon checkpoints and exits); the daemon's whole
    process group is killed if it outlasts ``timeout_s``. Returns the exit status (negative: the signal)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
