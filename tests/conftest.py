"""Shared test set-up: the integration tests need what `make setup` builds, and say so if it is missing."""

from __future__ import annotations

import pytest

from replicator.kcl.launcher import daemon_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("integration") for item in items):
        return
    missing = [str(p) for p in (daemon_dir() / "replicator-daemon.jar",) if not p.exists()]
    if missing:
        raise pytest.UsageError(f"integration tests need {', '.join(missing)}: run `make setup` first")
