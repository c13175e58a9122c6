"""The replica-shape options, defined once for `run` and every table tool (``changes.shape`` holds the rules).

`run` takes them among its path options (each with its properties key's camelCase alias); a table tool
takes them through :func:`shape_options`, one line on the command, and turns them into a
:class:`~replicator.changes.shape.ReplicaShape` with :func:`shape_from`, so that every command spells and
checks them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from replicator.changes.shape import FIELDS, ReplicaShape

PROJECTION_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("include-attributes", {"metavar": "A,B", "help": "Replicate only these top-level attributes (and always the "
                            "key attributes)."}),
    ("exclude-attributes", {"metavar": "A,B", "help": "Replicate every top-level attribute but these (key "
                            "attributes cannot be excluded)."}),
    ("filter", {"metavar": "EXPR", "help": "Replicate only items whose new image (plain JSON) matches this JMESPath "
                "expression, e.g. \"tenant == 'eu'\"; an item that stops matching is deleted from the replica."}),
]
TTL_OPTION: tuple[str, dict[str, Any]] = (
    "ttl-deletes", {"type": click.Choice(["replicate", "skip"]), "help": "TTL expiries (REMOVE records by DynamoDB's "
                    "service principal): replicate them, or skip them and keep the item in the replica. "
                    "[default: replicate]"})
SKIP_EXPIRED_OPTION: tuple[str, dict[str, Any]] = (
    "skip-expired", {"metavar": "ATTR", "help": "Leave out items whose TTL attribute ATTR (epoch seconds) is already "
                     "in the past, as if TTL had deleted them."})

STREAM_SHAPE_OPTIONS = [*PROJECTION_OPTIONS, TTL_OPTION]
"""The path settings `run` takes (properties keys includeAttributes, excludeAttributes, filter, ttlDeletes)."""

def shape_options(*, ttl: bool = False, expired: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add --include-attributes, --exclude-attributes, --filter and --skip-expired (with ``ttl``,
    --ttl-deletes, for a command that starts a path; without ``expired``, no --skip-expired: a stream shell)."""
    options = [*PROJECTION_OPTIONS, *([TTL_OPTION] if ttl else []), *([SKIP_EXPIRED_OPTION] if expired else [])]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for kebab, kwargs in reversed(options):
            func = click.option(f"--{kebab}", kebab.replace("-", "_"), default=None, **kwargs)(func)
        return func

    return decorate


def shape_from(options: dict[str, Any]) -> ReplicaShape:
    """Take the shape options out of a command's keyword arguments and build the shape (one line if bad)."""
    return ReplicaShape.build({name: options.pop(name, None) for name in FIELDS})
