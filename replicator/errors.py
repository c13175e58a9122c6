"""Errors a user can act on: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

CREDENTIALS_FIX = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance or task "
                   "role")


class ReplicatorError(Exception):
    """An expected condition (bad input, missing table, ...) whose message names the problem and the fix."""

    exit_code = 2


class NonRetryableWriteError(Exception):
    """The destination refused a write for a reason retrying cannot fix (missing table, access, validation).

    The processor exits without checkpointing, so the records are delivered again once the cause is fixed.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SourceReadError(NonRetryableWriteError):
    """The source refused the read-through of a keys-only change (missing table, access denied): the
    change cannot be made durable, for the same reasons and with the same handling as a refused write."""


def client_error(exc: ClientError) -> str:
    """``Code: Message; fix`` for an AWS refusal: a 5xx has outlived the client's retries, anything else
    (access, a missing resource, validation) needs the user to change something."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    fix = ("the service kept failing after retries: try again later" if status >= 500 else
           "check the names, the region and the permissions")
    return f"{error.get('Code')}: {error.get('Message')}; {fix}"


def expected_failure(exc: BaseException) -> str | None:
    """The one line for a failure a user can act on, or None for a bug (which keeps its traceback).

    Commands name the table or file themselves where they know it (a ReplicatorError); this is the net
    under them, so that an AWS refusal, an unreachable endpoint or an unreadable file that no command
    anticipated still reads as one line rather than a botocore traceback."""
    if isinstance(exc, ReplicatorError):
        return str(exc)
    if isinstance(exc, ClientError):
        return f"{exc.operation_name} failed: {client_error(exc)}"
    if isinstance(exc, NonRetryableWriteError):
        return f"a write was refused: {exc}; fix the cause (table, permissions, item), then run the command again"
    if isinstance(exc, NoCredentialsError):
        return f"no AWS credentials found: {CREDENTIALS_FIX}"
    if isinstance(exc, BotoCoreError):
        return f"cannot reach AWS: {exc}; check the endpoint and the network"
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({exc.reason}): save it as UTF-8"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot use {exc.filename}: {exc.strerror or exc}; check the path and its permissions"
    return None


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expected conditions become one line on stderr and exit status 2, never a traceback (see
    ``expected_failure``); anything else is a bug and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sorted into expected failures and bugs just below
            line = expected_failure(exc)
            if line is None:
                raise
            click.echo(f"replicator: error: {line}", err=True)
            sys.exit(exc.exit_code if isinstance(exc, ReplicatorError) else 2)

    return wrapper
