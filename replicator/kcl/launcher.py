"""The daemon launcher: finds Java and the jars, then runs our Java daemon for one or more paths.

The Java side (daemon/) runs each path with a KCL scheduler of its own in one JVM: the DynamoDB Streams
Kinesis Adapter's for a table path, a plain KCL scheduler polling the stream for a Kinesis path, both with
KCL's MultiLang processor, which runs our Python record processor per shard; everything a path needs comes
from its properties file. Each path's processors get that path's environment (``REPLICATOR_PATHS``, one
entry per checked file, see ``pathset``): ``REPLICATOR_PROPERTIES`` names its properties file and
``REPLICATOR_STREAM_ARN`` the stream `replicator run` found, which Java reads and with which the processors
label replication versions, so both agree on which stream is replicated. The processors find the
``replicator-processor`` executable on PATH, to which this module adds our own bin directory, and the daemon
checks a file added to its paths directory with this Python (``REPLICATOR_PYTHON``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from replicator.errors import ReplicatorError
from replicator.kcl import shard

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_CLASS = "replicator.daemon.StreamsMultiLangDaemon"
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


CLASS_ARCHIVE_ENV = "REPLICATOR_CLASS_ARCHIVE"
"""Where the daemon's class archive is (default: beside its jar), or ``none`` to start the JVM without one."""


def class_archive() -> Path | None:
    """The daemon's class archive (``local.class_archive`` trains it): its classes mapped ready-made at start."""
    chosen = os.environ.get(CLASS_ARCHIVE_ENV, "")
    if chosen.lower() == "none":
        return None
    return Path(chosen) if chosen else daemon_dir() / "replicator-daemon.jsa"


def command(*properties: Path, directory: Path | None = None, java: str | None = None, heap: str = "512m") -> list[str]:
    """The daemon for these path files, or for every path file of ``directory`` (followed while it runs)."""
    paths = (["--dir", os.path.abspath(directory)] if directory is not None
             else [os.path.abspath(p) for p in properties])
    # Without the archive (not trained yet), or with one the JVM finds stale, the daemon starts ~1 s slower.
    archive = class_archive()
    sharing = [f"-XX:SharedArchiveFile={archive}"] if archive is not None and archive.is_file() else []
    # Our logging configuration under its own name: the MultiLang jar ships a logback.xml as well.
    return [java or find_java(), f"-Xmx{heap}", *sharing, "-Dlogback.configurationFile=replicator-logback.xml",
            "-cp", classpath(), MAIN_CLASS, *paths]


STREAM_ARN_ENV = "REPLICATOR_STREAM_ARN"


STREAM_VIEW_ENV = "REPLICATOR_STREAM_VIEW"
"""A table path's stream view type, as `replicator run` found it: without new images, processors read through."""
KEY_SCHEMA_ENV = "REPLICATOR_KEY_SCHEMA"
"""A Kinesis path's key schema (``pk:S,sk:N``), as `replicator run` found it on the destination."""
PATHS_ENV = "REPLICATOR_PATHS"
"""JSON: ``{"paths": {file: its processors' environment}, "refused": {file: why}}``, from `replicator run`."""


def environment(paths: Mapping[Path, Mapping[str, str]], refused: Mapping[Path, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[PATHS_ENV] = json.dumps({"paths": {str(f): dict(e) for f, e in paths.items()},
                                 "refused": {str(f): why for f, why in (refused or {}).items()}})
    env["REPLICATOR_PYTHON"] = sys.executable
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def exec_daemon(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with the daemon, so that supervisord's or Docker's signals reach Java itself.

    The processors' zygote is started first, for this pid (the daemon's once exec'd), so that it has loaded
    while the JVM starts; if it cannot be, the first shard's shim starts it (``kcl.shard``)."""
    try:
        shard.start_ahead(os.getpid(), env)
    except OSError:
        pass  # the first shim starts it, or runs its processor itself and says why
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


def spawn_daemon(properties: Path, output: IO[bytes] | None = None, *, options: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`replicator run --properties FILE` (or, with ``options``, `replicator run OPTIONS`) as a child in its
    own session, so that it can be stopped as a process group (used by bootstrap, the demo and the tests);
    ``env`` is added to this process's."""
    replicator = Path(sys.executable).parent / "replicator"
    args = list(options) if options else ["--properties", str(properties)]
    return subprocess.Popen(
        [str(replicator), "run", *args],
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
