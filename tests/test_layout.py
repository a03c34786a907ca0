"""The house's shape, checked once and for all: no import cycles among the project's modules,
no module much over 500 lines, and the reference sampling path short enough to read (at most
four of the project's frames from ``predict`` to the network's ``forward``)."""

from __future__ import annotations

import ast
import traceback
from pathlib import Path

import numpy as np

import dp_agent

ROOT = Path(__file__).resolve().parents[1]
# folder -> the import name it is installed as (pyproject's package-dir)
PARTS = {"dp_agent": "dp_agent", "envs": "dp_agent.envs", "gui": "dp_agent.gui"}
MAX_MODULE_LINES = 550  # "about 500"


def project_modules() -> dict[str, Path]:
    modules = {}
    for folder, name in PARTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            modules[".".join([name, *parts])] = path
    return modules


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules ``module`` imports, at its top or inside functions (a lazy import
    still ties the two modules together)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                found.add(name)  # (a module's own parent packages are not a dependency)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_projects_modules_import_each_other_without_cycles():
    modules = project_modules()
    assert "dp_agent.fast.backends" in modules and "dp_agent.gui.app" in modules
    graph = {m: imports_of(p, m, set(modules)) for m, p in modules.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_dependencies_point_one_way():
    """``dp_agent`` never imports the app (but for the command that starts it); the envs never
    import torch; the policy's code does not know the fast path exists."""
    modules = project_modules()
    graph = {m: imports_of(p, m, set(modules)) for m, p in modules.items()}
    app = [m for m in modules if m == "dp_agent.gui" or m.startswith("dp_agent.gui.")]
    graph["dp_agent.cli.main"].discard("dp_agent.gui")  # `dp-agent gui` starts the app (lazily)
    for module, deps in graph.items():
        if module not in app:
            assert not deps & set(app), module
    for module in ("dp_agent.policy", "dp_agent.nets.unet", "dp_agent.diffusion.samplers"):
        assert not any(d.startswith("dp_agent.fast") for d in graph[module]), module
    for path in (ROOT / "envs").rglob("*.py"):
        assert "torch" not in {
            a.name.split(".")[0]
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Import)
            for a in n.names
        } | {
            (n.module or "").split(".")[0]
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom)
        }, path


def test_no_module_is_much_longer_than_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in project_modules().values()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_predict_reaches_the_networks_forward_in_at_most_four_of_our_frames(tiny_agent):
    """With the eager backend: predict -> _sample -> DiffusionPolicy.sample -> the chunk's
    steps -> forward."""
    tiny_agent.set_backend("eager")
    net = tiny_agent.policy.denoiser
    stacks = []
    forward = net.forward

    def spy(*args, **kwargs):
        stacks.append(traceback.extract_stack()[:-1])
        return forward(*args, **kwargs)

    net.forward = spy
    tiny_agent.predict(np.zeros(3, np.float32))
    assert stacks, "the network was not called"
    package = Path(dp_agent.__file__).parent
    for stack in stacks:
        names = [f.name for f in stack]
        ours = [
            f for f in stack[names.index("predict") :] if Path(f.filename).is_relative_to(package)
        ]
        assert ours[0].name == "predict" and len(ours) <= 4, [f.name for f in ours]
