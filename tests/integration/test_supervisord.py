"""supervisord.conf, for real: supervisord runs a path, restarts it after kill -9, and replication resumes."""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replicator.local.sandbox import Sandbox
from replicator.local.workload import MixedWorkload

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROGRAM = "program:replicate-example"


def render(conf_dir: Path, properties: Path) -> Path:
    """The repository's supervisord.conf, pointed at this test's path and directories; nothing else changed."""
    config = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    config.read(REPO / "supervisord.conf")
    here = str(conf_dir)
    for section in config.sections():
        for key, value in config.items(section):
            config.set(section, key, value.replace("%(here)s/.venv/bin", str(BIN)).replace("%(here)s", here))
    config.set(PROGRAM, "command", f"{BIN}/replicator run --properties {properties}")
    (conf_dir / "run").mkdir(parents=True, exist_ok=True)
    rendered = conf_dir / "supervisord.conf"
    with open(rendered, "w") as out:
        config.write(out)
    return rendered


def ctl(conf: Path, *args: str) -> str:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(conf), *args], capture_output=True, text=True).stdout


def program_pid(conf: Path) -> int:
    out = ctl(conf, "pid", "replicate-example").strip()
    return int(out) if out.isdigit() else 0


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_supervisord_runs_the_path_and_restarts_it_after_kill_9(tmp_path: Path) -> None:
    shipped = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    shipped.read(REPO / "supervisord.conf")
    assert shipped.get(PROGRAM, "autorestart") == "true"
    assert shipped.get(PROGRAM, "stopsignal") == "TERM"
    assert int(shipped.get(PROGRAM, "stopwaitsecs")) > 30  # above the default shutdownGraceMillis

    with Sandbox(tmp_path / "sandbox") as sandbox:
        conf = render(tmp_path / "sv", sandbox.properties)
        supervisord = subprocess.Popen([str(BIN / "supervisord"), "-n", "-c", str(conf)], env=dict(os.environ))
        try:
            first_pid = wait_for(lambda: program_pid(conf), 60, "supervisord to start the path")
            MixedWorkload(sandbox.source, sandbox.source_table, keys=100, seed=21).run(300, rate=300)
            assert sandbox.wait_for_equality(timeout_s=240).discrepancies == 0

            os.kill(first_pid, signal.SIGKILL)
            second_pid = wait_for(lambda: (p := program_pid(conf)) and p != first_pid and p, 60,
                                  "supervisord to restart the path")
            assert second_pid != first_pid
            MixedWorkload(sandbox.source, sandbox.source_table, keys=100, seed=22, first_rev=5000).run(300, rate=300)
            diff = sandbox.wait_for_equality(timeout_s=300)
            assert diff.discrepancies == 0

            ctl(conf, "stop", "replicate-example")
            log = (tmp_path / "sv" / "run" / "supervisord.log").read_text()
            assert "exited: replicate-example (terminated by SIGKILL" in log
            assert "stopped: replicate-example (exit status 0)" in log
        finally:
            supervisord.send_signal(signal.SIGTERM)
            supervisord.wait(timeout=90)
