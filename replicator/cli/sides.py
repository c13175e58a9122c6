"""The credential options of each side a command touches, added by one decorator.

Every path and tool takes, for each side it reaches, ``--SIDE-role-arn`` with ``--SIDE-external-id`` (and,
for the source and destination, ``--SIDE-profile``), in the Java connector's camelCase spelling too
(``--destinationRoleArn``). The rule for what they mean lives in ``replicator.credentials``; this module only
names the options, so that each command says which sides it has in one line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from replicator import credentials
from replicator.credentials import Credentials

_WHAT = {"source": "the source table (and its stream)", "destination": "the destination table",
         "kcl": "the lease and checkpoint table (default: the source's credentials)",
         "cloudwatch": "CloudWatch, for the metrics (default: the source's credentials)",
         "s3": "the backup's S3 bucket (e.g. in a third account)"}
_CAMEL = {"source": "source", "destination": "destination", "kcl": "kcl", "cloudwatch": "cloudWatch", "s3": "s3"}
PROFILE_SIDES = ("source", "destination")


def options_of(side: str) -> list[tuple[str, dict[str, Any]]]:
    """(kebab name, click settings) of a side's options: role ARN, external id, and profile where it has one."""
    found: list[tuple[str, dict[str, Any]]] = [
        (f"{side}-role-arn", {"metavar": "ARN", "help": f"Assume this IAM role to reach {_WHAT[side]}; its "
                              "credentials are renewed before they expire."}),
        (f"{side}-external-id", {"metavar": "ID", "help": f"The external id the --{side}-role-arn's trust policy asks for."}),
    ]
    if side in PROFILE_SIDES:
        found.append((f"{side}-profile", {"metavar": "NAME", "help": f"Reach {_WHAT[side]} with this named profile "
                                          f"(or assume --{side}-role-arn from it)."}))
    return found


def camel(kebab: str) -> str:
    side, _, rest = kebab.partition("-")
    return _CAMEL[side] + "".join(part.capitalize() for part in rest.split("-"))


PATH_CREDENTIAL_OPTIONS = [option for side in ("source", "destination", "kcl", "cloudwatch")
                           for option in options_of(side)]
"""The path's credential options, for `run`, `status` and `bootstrap` (keys of ``kcl.config.PATH_KEYS``)."""


def field_of(kebab: str) -> str:
    return kebab.replace("-", "_")


def with_credentials(*sides: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of ``sides``; the command gets them as ``sides``: {side: Credentials}, checked."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        names = [kebab for side in sides for kebab, _ in options_of(side)]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {field_of(kebab): kwargs.pop(field_of(kebab)) for kebab in names}
            found = {side: credentials.of(values, side) for side in sides}
            for side, creds in found.items():
                credentials.check(creds, side)
            return func(*args, sides=found, **kwargs)

        command: Callable[..., Any] = wrapper
        for side in reversed(sides):
            for kebab, settings in reversed(options_of(side)):
                command = click.option(f"--{kebab}", f"--{camel(kebab)}", field_of(kebab), default=None,
                                       **settings)(command)
        return command

    return decorate


def side(sides: dict[str, Credentials], name: str) -> Credentials:
    return sides.get(name, credentials.DEFAULT)
