"""Fixtures for the fast unit tests: offline AWS settings and a moto server.

Plain helpers live in unit_helpers.py, a uniquely named module, so test modules can import them whatever
other conftest.py files the wider test tree has.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from unit_helpers import FAKE_AWS_ENV, free_port


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no profile or endpoint from the machine, so boto3 and moto never go online."""
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture(autouse=True)
def uncached_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commands run in-process call log.configure(), whose cached loggers would escape the capture_logs of
    every later test; the logs stay uncached here, and structlog's defaults come back after each test."""
    configure = structlog.configure
    monkeypatch.setattr(structlog, "configure",
                        lambda **settings: configure(**{**settings, "cache_logger_on_first_use": False}))
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1, for code that runs in another process. Tests use unique table names."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
