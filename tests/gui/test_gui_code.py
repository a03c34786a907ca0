"""House rules for the app's code that a reader checks by eye, checked here once and for all."""

from __future__ import annotations

import ast
from pathlib import Path

import dp_agent.gui

GUI = Path(dp_agent.gui.__file__).parent
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"  # absent in an installed copy
MAX_LINES = 60


def test_no_function_is_longer_than_60_lines_outside_the_qt_layout_builders():
    long = []
    for path in sorted([*GUI.glob("*.py"), *BENCHMARKS.glob("gui_*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES and not node.name.startswith("_build"):
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


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
