"""Errors a user can act on: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click


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


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expected conditions become one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ReplicatorError as exc:
            click.echo(f"replicator: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper
