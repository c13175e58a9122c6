"""CLI commands of the table tools; `replicator.cli` adds each command in TOOL_COMMANDS to the group."""

from __future__ import annotations

import click

TOOL_COMMANDS: list[click.Command] = []
