"""The operator's room sits on top: nothing in shared/ outside shared/ops/ imports it, and telemetry reads the outcome
types from shared.outcomes, not from the engine that uses it."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_nothing_below_the_ops_room_imports_it() -> None:
    offenders = [
        str(path.relative_to(SHARED.parent))
        for path in SHARED.rglob("*.py")
        if "ops" not in path.relative_to(SHARED).parts[:1] and path.name != "__main__.py"
        and any(name == "shared.ops" or name.startswith("shared.ops.") for name in _imports(path))
    ]
    assert offenders == []


def test_telemetry_reads_outcomes_not_the_engine() -> None:
    assert not any(n.startswith("shared.engine") for n in _imports(SHARED / "telemetry.py"))
    assert any(n.startswith("shared.outcomes") for n in _imports(SHARED / "telemetry.py"))
