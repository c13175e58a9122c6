"""The rooms of ``replicator/`` keep their order: a lower room never imports a higher one.

The tree tells the design only while this holds; a stray import upwards would make ``changes`` (the core
every shell runs) depend on the KCL, the tools or the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import replicator

PACKAGE = Path(replicator.__file__).parent
# Lowest first. The top-level modules (clients, errors, log) are the floor every room stands on.
ROOMS = ["", "changes", "lambda_handler", "kcl", "tables", "local", "cli"]


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else ""


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(n for n in names if n.startswith("replicator"))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("replicator"))
    return found


def test_every_room_says_what_it_is_for():
    for room in ROOMS[1:]:
        init = PACKAGE / room / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"


def test_no_room_imports_a_higher_one():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = "replicator." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = ROOMS.index(room_of(module))
        for imported in imports(path):
            if ROOMS.index(room_of(imported)) > own:
                upward.append(f"{module} imports {imported}")
    assert upward == []
