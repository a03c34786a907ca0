"""House rules for the app's code (the 60-line rule for all code is in tests/test_code_shape.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import dp_agent.gui

GUI = Path(dp_agent.gui.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_app_reads_demo_files_only_through_the_demo_store():
    assert [p.name for p in GUI.glob("*.py") if "h5py" in _imports(p)] == []
