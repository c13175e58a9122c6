"""The rate-limit bucket's file: in a private directory of this user, and gone once its worker stops."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from replicator.errors import ReplicatorError
from replicator.kcl import ratelimit
from replicator.kcl.ratelimit import SharedTokenBucket, private_directory


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def test_the_directory_is_private_to_this_user_under_the_runtime_directory(runtime_dir):
    directory = private_directory()
    assert directory == runtime_dir / f"replicator-buckets-{os.getuid()}"
    assert directory.stat().st_mode & 0o777 == 0o700 and directory.stat().st_uid == os.getuid()
    assert private_directory() == directory  # and found again


def test_without_a_runtime_directory_it_is_named_after_the_user_in_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert private_directory() == tmp_path / f"replicator-buckets-{os.getuid()}"
    assert (tmp_path / f"replicator-buckets-{os.getuid()}").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_directory_others_can_write_to_is_refused(runtime_dir, mode):
    (runtime_dir / f"replicator-buckets-{os.getuid()}").mkdir()
    (runtime_dir / f"replicator-buckets-{os.getuid()}").chmod(mode)
    with pytest.raises(ReplicatorError, match="not a private directory"):
        private_directory()


def test_a_link_in_place_of_the_directory_is_refused(runtime_dir):
    (runtime_dir / "elsewhere").mkdir(mode=0o700)
    (runtime_dir / f"replicator-buckets-{os.getuid()}").symlink_to(runtime_dir / "elsewhere")
    with pytest.raises(ReplicatorError, match="not a private directory"):
        private_directory()


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a directory to another user")
def test_a_directory_of_another_user_is_refused(runtime_dir):
    (runtime_dir / f"replicator-buckets-{os.getuid()}").mkdir(mode=0o700)
    os.chown(runtime_dir / f"replicator-buckets-{os.getuid()}", 4321, 4321)
    with pytest.raises(ReplicatorError, match="not a private directory"):
        private_directory()


def test_the_last_processor_to_close_the_bucket_removes_its_file(runtime_dir):
    first = SharedTokenBucket.for_worker("app", 10)
    second = SharedTokenBucket.for_worker("app", 10)
    (path,) = (runtime_dir / f"replicator-buckets-{os.getuid()}").iterdir()
    assert path.name == f"rate-app-{os.getppid()}.bucket" and path.stat().st_mode & 0o777 == 0o600
    first.take(10)
    assert second.take(5) > 0  # one bucket: the first's take left none
    first.close()
    assert path.exists()
    second.close()
    assert not path.exists()
    third = SharedTokenBucket.for_worker("app", 10)  # a new worker's processor starts afresh
    try:
        assert third.take(10) == 0.0
    finally:
        third.close()


def test_the_files_of_workers_that_are_gone_are_removed(runtime_dir):
    directory = private_directory()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (directory / f"rate-app-{gone.pid}.bucket").write_bytes(b"")
    (directory / f"rate-other-{os.getpid()}.bucket").write_bytes(b"")  # a live worker's
    bucket = SharedTokenBucket.for_worker("app", 10)
    bucket.close()
    assert sorted(p.name for p in directory.iterdir()) == [f"rate-other-{os.getpid()}.bucket"]


def test_a_bucket_removed_while_a_processor_opened_it_is_not_used(runtime_dir, monkeypatch):
    """The last holder may remove the file between another's open and its lock: that one opens it again."""
    first = SharedTokenBucket.for_worker("app", 10)
    real_flock = ratelimit.fcntl.flock
    closed = []

    def flock_after_the_last_holder_left(fd, operation):
        if not closed:
            closed.append(True)
            first.close()
        real_flock(fd, operation)

    monkeypatch.setattr(ratelimit.fcntl, "flock", flock_after_the_last_holder_left)
    second = SharedTokenBucket.for_worker("app", 10)
    monkeypatch.setattr(ratelimit.fcntl, "flock", real_flock)
    (path,) = (runtime_dir / f"replicator-buckets-{os.getuid()}").iterdir()
    assert os.path.samestat(path.stat(), os.fstat(second._fd))
    second.close()
    assert not path.exists()
