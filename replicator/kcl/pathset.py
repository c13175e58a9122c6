"""The paths one daemon runs: which files they are, and each one checked before it starts.

`replicator run` may run several paths in one daemon (one JVM, one KCL scheduler per path): repeated
``--properties FILE``, or ``--properties-dir DIR``, every ``*.properties`` in DIR (regular files whose name
does not start with a dot; the daemon applies the same rule to the files added later). Each path is checked
as a single path is (``checks``) before anything starts, and its check gives the environment its record
processors need (``environment``): its properties file, the stream it checked, and the stream view or key
schema it found.

A refused path among several: with explicit files, nothing starts (each was named on purpose, so a typo in
one should not go unnoticed while the others run); in a directory, the bad file is reported in one line
and the others start (one bad file dropped into a shared directory must not stop the paths already there).
Two files of one path (one lease table) are refused either way: they would be two workers of it in one JVM.

The daemon checks a file added to its directory later with this module's ``main``
(``python -m replicator.kcl.pathset FILE``), which prints the environment as JSON, or exits 2 with one line
naming the problem and the fix.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from replicator.errors import ReplicatorError, expected_failure
from replicator.kcl import preflight, stopped
from replicator.kcl.config import ReplicationPath, path_from_properties, read_properties
from replicator.kcl.launcher import STREAM_ARN_ENV

PROPERTIES_ENV = "REPLICATOR_PROPERTIES"


def path_files(directory: Path) -> list[Path]:
    """The path files of a paths directory, sorted: ``*.properties``, regular, not hidden."""
    if not directory.is_dir():
        raise ReplicatorError(f"--properties-dir {directory} is not a directory: give the directory of the "
                              "paths' properties files")
    return sorted(absolute(p) for p in directory.iterdir()
                  if p.name.endswith(".properties") and not p.name.startswith(".") and p.is_file())


def absolute(path: Path) -> Path:
    """The file's absolute, normalised name, symbolic links kept: the name the daemon knows it by."""
    return Path(os.path.abspath(path))


@dataclass(frozen=True)
class CheckedPath:
    properties: Path
    path: ReplicationPath
    environment: dict[str, str]


def environment(properties: Path, path: ReplicationPath) -> dict[str, str]:
    """Check the path as a single `run` does (``preflight``), and return its processors' environment."""
    checked = preflight.check_path(path)
    preflight.warn(checked, properties=str(properties))
    return {PROPERTIES_ENV: str(absolute(properties)), STREAM_ARN_ENV: checked.stream_arn, **checked.extra_env}


def check_file(properties: Path) -> CheckedPath:
    path = path_from_properties(read_properties(properties), source=str(properties))
    return CheckedPath(absolute(properties), path, environment(properties, path))


def check_files(files: list[Path], *, from_directory: bool) -> tuple[list[CheckedPath], dict[Path, str]]:
    """Check every file: (the paths that may start, the refused files with their one-line reason).

    Explicit files (``from_directory`` false) raise the first refusal, naming its file, so that nothing
    starts; a directory's refused files are returned for the caller to report."""
    checked: list[CheckedPath] = []
    refused: dict[Path, str] = {}
    by_lease_table: dict[str, Path] = {}
    for file in files:
        try:
            one = check_file(file)
            other = by_lease_table.get(one.path.application_name)
            if other is not None:
                raise ReplicatorError(f"it is the same path as {other} (lease table {one.path.application_name}): "
                                      "keep one of the two files")
        except ReplicatorError as exc:
            if not from_directory:
                raise ReplicatorError(f"{file}: {exc}; nothing was started") from None
            refused[absolute(file)] = str(exc)
            continue
        by_lease_table[one.path.application_name] = file
        checked.append(one)
    return checked, refused


def started(paths: list[CheckedPath]) -> None:
    """The paths start again: their old stop records (``stopped``) no longer apply."""
    for one in paths:
        stopped.clear(one.properties)


def main(argv: list[str] | None = None) -> None:
    """``python -m replicator.kcl.pathset FILE``: the daemon's check of a file added to its directory."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m replicator.kcl.pathset FILE", file=sys.stderr)
        sys.exit(2)
    try:
        one = check_file(Path(args[0]))
    except Exception as exc:  # noqa: BLE001 - expected conditions become one line, as the CLI's do
        line = expected_failure(exc)
        if line is None:
            raise
        print(f"replicator: error: {line}", file=sys.stderr)
        sys.exit(2)
    started([one])
    print(json.dumps(one.environment))


if __name__ == "__main__":
    main()
