"""A replica that differs on purpose (changes.shape), end to end: the local server's stream, the adapter,
KCL 3 and our processor, with --exclude-attributes and --filter, and diff-tables run with the same options."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from replicator.changes.versions import replica_view
from replicator.local.sandbox import DESTINATION_REGION, SOURCE_REGION, Sandbox
from replicator.local.workload import MixedWorkload
from replicator.tables.compare import normalise, scan_items

pytestmark = pytest.mark.integration

EXCLUDED = ("b", "bs", "m")
FILTER = "s == 'text' || ends_with(s, '7')"
"""MixedWorkload's puts write s = 'text' and its updates s = 'u<rev>': an updated item leaves the filter unless
its revision ends in 7, and a put brings it back, so items keep moving in and out."""


def matches(item: dict[str, Any]) -> bool:
    """The filter, in plain Python: the model the replica is checked against."""
    s = item.get("s", {}).get("S")
    return s == "text" or (s is not None and s.endswith("7"))


def seen_through_the_options(item: dict[str, Any]) -> dict[str, Any] | None:
    return {k: v for k, v in item.items() if k not in EXCLUDED} if matches(item) else None


def key(item: dict[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["N"]


def expected_and_actual(sandbox: Sandbox) -> tuple[dict, dict]:
    expected = {key(i): normalise(v) for i in scan_items(sandbox.source, sandbox.source_table)
                if (v := seen_through_the_options(i)) is not None}
    actual = {key(i): normalise(v) for i in scan_items(sandbox.destination, sandbox.destination_table)
              if (v := replica_view(i, "rv")) is not None}
    return expected, actual


def test_a_filtered_projected_replica_equals_its_source_seen_through_the_same_options(tmp_path: Path) -> None:
    settings = {"exclude_attributes": ",".join(EXCLUDED), "filter": FILTER, "version_attribute": "rv"}
    with Sandbox(tmp_path, path_settings=settings) as sandbox:
        sandbox.start_daemon()
        workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=150, seed=31)
        stats = workload.run(900, rate=300)
        assert stats.updates > 100 and stats.puts > 100 and stats.deletes > 50

        deadline = time.monotonic() + 240
        expected, actual = expected_and_actual(sandbox)
        while expected != actual and time.monotonic() < deadline:
            time.sleep(1)
            expected, actual = expected_and_actual(sandbox)
        missing = sorted(set(expected) - set(actual))[:3]
        extra = sorted(set(actual) - set(expected))[:3]
        assert expected == actual, (missing, extra, sandbox.daemon_log(0)[-2000:])
        source_count = sum(1 for _ in scan_items(sandbox.source, sandbox.source_table))
        assert 20 < len(expected) < source_count  # some items in the filter, some out of it
        assert all(not set(EXCLUDED) & set(item) for item in actual.values())

        def diff_tables(*options: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(Path(sys.executable).parent / "replicator"), "diff-tables",
                 f"{SOURCE_REGION}/{sandbox.source_table}", f"{DESTINATION_REGION}/{sandbox.destination_table}",
                 "--source-endpoint", sandbox.source_server.endpoint,
                 "--destination-endpoint", sandbox.destination_server.endpoint, "--version-attribute", "rv",
                 "--json", *options], capture_output=True, text=True, timeout=120)

        same = diff_tables("--exclude-attributes", ",".join(EXCLUDED), "--filter", FILTER)
        assert same.returncode == 0, same.stdout + same.stderr
        assert "0 missing, 0 different, 0 extraneous" in same.stdout
        assert json.loads(same.stdout.strip().splitlines()[-1])["scanned"] == source_count
        # Without the options the same replica is far from its source: the check is not vacuous.
        plain = diff_tables()
        assert plain.returncode == 1
        report = json.loads(plain.stdout.strip().splitlines()[-1])
        projected = sum(1 for i in scan_items(sandbox.source, sandbox.source_table)
                        if matches(i) and set(EXCLUDED) & set(i))  # an item an update created has none of them
        assert (report["different"], report["missing"]) == (projected, source_count - len(expected))
        assert projected > 20

        # Items moved out: a put wrote them (s = 'text', in the filter), an update took them out, and the replica
        # holds the fence's tombstone where the item was, while the source still has the item.
        left = {key(i) for i in scan_items(sandbox.source, sandbox.source_table)
                if not matches(i) and set(EXCLUDED) & set(i)}
        tombstones = {key(i) for i in scan_items(sandbox.destination, sandbox.destination_table) if "rv_tombstone" in i}
        assert len(left & tombstones) > 10
