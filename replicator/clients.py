"""boto3 clients for a replication path, configured once for the whole project.

Each client comes from a session of its own, unless ``share_session`` was called: a record processor forked
from the processors' preloaded parent (``kcl.zygote``) then takes every client from the one session the
parent made, whose service models (megabytes of parsed JSON) are already loaded and shared with its siblings.

Each client's region and endpoint are checked first: botocore would otherwise raise a traceback
(InvalidRegionError, "ValueError: Invalid endpoint") far from the option that was mistyped. Each client
is made with its side's ``credentials.Credentials`` (a role, a profile, or the default chain). ``side``
says which options a message names: ``"source"`` is --source-region and --source-endpoint, ``""``
--region and --endpoint, and None (code that is not the CLI, e.g. the Lambda) plain "region" and "endpoint".
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from replicator.credentials import DEFAULT, Credentials, check, client, option_name
from replicator.errors import ReplicatorError

_REGION = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""AWS region names are lower-case letters, digits and dashes (us-east-1); a local server takes any such name."""


_shared_session: Any = None
_session_lock = threading.Lock()
"""Creating clients from one session is not thread-safe; the lock makes it so (it is only taken to create)."""


def share_session(*, preload: tuple[str, ...] = ()) -> None:
    """Make every later client of this process come from one session, and load ``preload``'s service models
    into it now (through a client with placeholder keys, so that no credentials are looked up yet: each
    process forked from this one finds its own, from its own environment)."""
    global _shared_session
    with _session_lock:
        _shared_session = boto3.session.Session()
        for service in preload:
            _shared_session.client(service, region_name="us-east-1", aws_access_key_id="preload",
                                   aws_secret_access_key="preload")


def _client(credentials: Credentials, service: str, region: str, endpoint: str | None, config: Config,
            side: str | None) -> Any:
    """A client from the shared session when there is one and the side uses the default chain; a side with
    a role or a profile has a session of its own (``credentials.session``), made in the processor itself."""
    if _shared_session is None or not credentials.is_default:
        return client(credentials, service, region, endpoint, config, side)
    check(credentials, side)
    with _session_lock:
        return _shared_session.client(service, region_name=region, endpoint_url=endpoint, config=config)


def is_endpoint_url(endpoint: str) -> bool:
    """An http(s) URL with a host and, if any, a port in range: what botocore can send requests to."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_location(region: str, endpoint: str | None, side: str | None = None) -> None:
    """One ReplicatorError naming the option unless ``region`` is a region name and ``endpoint`` (if any)
    an http(s) URL with a host."""
    if not isinstance(region, str) or not _REGION.match(region):
        raise ReplicatorError(f"{option_name(side, 'region')} {region!r} is not a region name: give one like us-east-1 "
                              "(lower-case letters, digits and dashes)")
    if endpoint is not None and not is_endpoint_url(endpoint):
        raise ReplicatorError(f"{option_name(side, 'endpoint')} {endpoint!r} is not a URL: give http(s)://host[:port], "
                              "e.g. http://127.0.0.1:8000, or drop the option")


def dynamodb(region: str, endpoint: str | None, *, pool: int = 16, retries: int = 1, validate: bool = True,
             read_timeout_s: float = 30, side: str | None = None,
             credentials: Credentials = DEFAULT) -> Any:
    """A DynamoDB client. The writer does its own unbounded retries, so botocore's default is one attempt.

    ``validate=False`` skips botocore's client-side parameter validation: for items that come from
    DynamoDB itself (stream images, scans) it only re-checks what the service checks anyway, and it is a
    third of the processor's CPU per batch (measured: 1.64 s against 1.09 s of Python CPU for 6,000 items).
    """
    check_location(region, endpoint, side)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": retries},
        max_pool_connections=pool,
        connect_timeout=5,
        read_timeout=read_timeout_s,
        parameter_validation=validate,
    )
    return _client(credentials, "dynamodb", region, endpoint, config, side)


def streams(region: str, endpoint: str | None, side: str | None = None, credentials: Credentials = DEFAULT) -> Any:
    check_location(region, endpoint, side)
    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return _client(credentials, "dynamodbstreams", region, endpoint, config, side)


def s3(region: str, endpoint: str | None, *, pool: int = 32, side: str | None = None,
       credentials: Credentials = DEFAULT) -> Any:
    """An S3 client for backups. A given endpoint (the local server, MinIO) is addressed by path
    (``endpoint/bucket/key``): such endpoints have no per-bucket DNS names."""
    check_location(region, endpoint, side)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 5},
        max_pool_connections=pool,
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return _client(credentials, "s3", region, endpoint, config, side)


def cloudwatch(region: str, endpoint: str | None, side: str | None = None,
               credentials: Credentials = DEFAULT) -> Any:
    """A CloudWatch client for the processors' metrics: short timeouts and few attempts, since a metrics
    interval that cannot be sent is dropped rather than allowed to pile up."""
    check_location(region, endpoint, side)
    config = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5, read_timeout=10)
    return _client(credentials, "cloudwatch", region, endpoint, config, side)


def kinesis(region: str, endpoint: str | None, side: str | None = None, credentials: Credentials = DEFAULT) -> Any:
    check_location(region, endpoint, side)
    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return _client(credentials, "kinesis", region, endpoint, config, side)
