"""Helpers shared by the unit tests: ports, tables, records and KCL inputs."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3

from replicator.changes.codec import Change, decode_record, encode_record

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_table(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def endpoint_client(endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.client(
        "dynamodb",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_pk_table(client: Any, name: str, *, stream_view: str | None = None, key_type: str = "S") -> None:
    """A table keyed by pk (type key_type), optionally with a stream of the given view type."""
    kwargs: dict[str, Any] = {}
    if stream_view:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view}
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": key_type}],
        BillingMode="PAY_PER_REQUEST",
        **kwargs,
    )


def put_change(pk: str, seq: str = "1", **attrs: Any) -> Change:
    """The Change for an INSERT of item {pk, **attrs} (attrs in boto3 form)."""
    keys = {"pk": {"S": pk}}
    return decode_record(encode_record("INSERT", keys, {**keys, **attrs}, seq))


def delete_change(pk: str, seq: str = "1") -> Change:
    return decode_record(encode_record("REMOVE", {"pk": {"S": pk}}, None, seq))


class FakeCheckpointer:
    """Records checkpoint calls; raises the scripted errors first, one per call."""

    def __init__(self, errors: list[BaseException] | None = None) -> None:
        self.calls: list[str | None] = []
        self._errors = list(errors or [])

    def checkpoint(self, seq: str | None = None) -> None:
        self.calls.append(seq)
        if self._errors:
            raise self._errors.pop(0)


def _sequence_of(data: bytes, index: int) -> str:
    """The adapter gives a record the sequence number of its stream record."""
    try:
        return json.loads(data)["dynamodb"]["SequenceNumber"]
    except (ValueError, KeyError, TypeError):
        return str(index)


def kcl_input(records: list[bytes], checkpointer: FakeCheckpointer, millis_behind_latest: int = 0) -> Any:
    """What amazon-kclpy hands process_records (and, without records, shard_ended/shutdown_requested)."""
    return SimpleNamespace(
        records=[SimpleNamespace(binary_data=data, sequence_number=_sequence_of(data, i)) for i, data in enumerate(records)],
        checkpointer=checkpointer,
        millis_behind_latest=millis_behind_latest,
    )
