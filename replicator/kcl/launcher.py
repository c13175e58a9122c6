"""The daemon launcher: finds Java and the jars, then runs the KCL MultiLangDaemon for a path.

For a table path, the Java side (daemon/) is a thin class that wires the DynamoDB Streams Kinesis Adapter's
scheduler to KCL's MultiLang processor factory; everything it needs comes from the path's properties file.
A Kinesis path runs amazon-kclpy's stock MultiLangDaemon from the jars amazon-kclpy installed, with no
Java of ours; against a local endpoint it turns off the SDK's CBOR, which moto cannot read. The
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
KINESIS_MAIN_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
LOGBACK = Path(__file__).with_name("replicator-logback.xml")


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


def kclpy_jars() -> Path:
    """amazon-kclpy's jars: KCL, its MultiLang daemon and their dependencies, fetched when it was installed."""
    import amazon_kclpy

    jars = Path(amazon_kclpy.__file__).parent / "jars"
    if not any(jars.glob("amazon-kinesis-client-multilang-*.jar")):
        raise ReplicatorError(f"amazon-kclpy's jars are missing from {jars}: reinstall it (`make setup`, or "
                              "pip install --force-reinstall amazon-kclpy)")
    return jars


def command(properties: Path, java: str | None = None, heap: str = "512m") -> list[str]:
    # Our logging configuration under its own name: the MultiLang jar ships a logback.xml as well.
    return [java or find_java(), f"-Xmx{heap}", "-Dlogback.configurationFile=replicator-logback.xml",
            "-cp", classpath(), MAIN_CLASS, str(properties)]


def kinesis_command(properties: Path, *, local_endpoint: bool, java: str | None = None, heap: str = "512m") -> list[str]:
    """The stock MultiLangDaemon as amazon-kclpy runs it: its jars and the properties' directory on the
    classpath, and the file named by ``--properties-file``."""
    cbor = ["-Daws.cborEnabled=false"] if local_endpoint else []
    return [java or find_java(), f"-Xmx{heap}", *cbor, f"-Dlogback.configurationFile={LOGBACK}",
            "-cp", os.pathsep.join([str(kclpy_jars() / "*"), str(properties.resolve().parent)]),
            KINESIS_MAIN_CLASS, "--properties-file", str(properties.resolve())]


STREAM_ARN_ENV = "REPLICATOR_STREAM_ARN"


STREAM_VIEW_ENV = "REPLICATOR_STREAM_VIEW"
"""A table path's stream view type, as `replicator run` found it: without new images, processors read through."""
KEY_SCHEMA_ENV = "REPLICATOR_KEY_SCHEMA"
"""A Kinesis path's key schema (``pk:S,sk:N``), as `replicator run` found it on the destination."""


def environment(properties: Path, stream_arn: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    env["REPLICATOR_PROPERTIES"] = str(properties.resolve())
    env[STREAM_ARN_ENV] = stream_arn
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def exec_daemon(properties: Path, stream_arn: str, argv: list[str] | None = None,
                extra_env: dict[str, str] | None = None) -> None:
    """Replace this process with the daemon, so that supervisord's or Docker's signals reach Java itself."""
    argv = argv or command(properties)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, environment(properties, stream_arn, extra_env))


def spawn_daemon(properties: Path, output: IO[bytes] | None = None,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`replicator run --properties FILE` as a child in its own session, so that it can be stopped as a
    process group (used by bootstrap, the demo and the tests); ``env`` is added to this process's."""
    replicator = Path(sys.executable).parent / "replicator"
    return subprocess.Popen(
        [str(replicator), "run", "--properties", str(properties)],
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
        env={**os.environ, **(env or {})},
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
