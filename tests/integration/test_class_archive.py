"""The JVM of `replicator run` maps the daemon's classes from the archive `make setup` trained."""

from __future__ import annotations

import subprocess

import pytest

from replicator.kcl import launcher

pytestmark = pytest.mark.integration


def test_the_daemons_jvm_loads_its_classes_from_the_trained_archive(tmp_path) -> None:
    argv = launcher.command(tmp_path / "absent.properties")
    archive = launcher.class_archive()
    assert archive is not None and f"-XX:SharedArchiveFile={archive}" in argv, "run `make setup` to train it"
    main = argv.index(launcher.MAIN_CLASS)
    # -Xshare:on: fail rather than run without the archive (a stale one: another JVM, a rebuilt jar).
    probe = [*argv[:main], "-Xshare:on", "-Xlog:class+load=info:stdout", launcher.MAIN_CLASS]
    run = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    assert "usage: StreamsMultiLangDaemon" in run.stderr, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"{launcher.MAIN_CLASS} source: shared objects file (top)" in run.stdout
    from_archive = run.stdout.count("source: shared objects file (top)")
    assert from_archive > 500, f"only {from_archive} classes came from the archive"
