"""House rules a reader checks by eye, checked here once and for all: no function over 60 lines
outside the Qt layout builders (``_build*``), in every part of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dp_agent
import dp_agent.data
import dp_agent.envs
import dp_agent.gui

ROOT = Path(__file__).resolve().parents[1]
PARTS = [Path(m.__file__).parent for m in (dp_agent, dp_agent.envs, dp_agent.data, dp_agent.gui)]
MAX_LINES = 60


def long_functions(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES and not node.name.startswith("_build"):
                    found.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    return found


@pytest.mark.parametrize("folder", [*PARTS, ROOT / "benchmarks"], ids=lambda p: p.name)
def test_no_function_is_longer_than_60_lines_outside_the_qt_layout_builders(folder):
    assert folder.is_dir() and long_functions(folder) == []
