"""The documentation cites only what exists: every code name and file the README and docs/ name
in backticks, code blocks or links resolves; the README stays a front door; the results files
keep the sections their benchmark scripts rewrite. (CHANGELOG.md is history: what it names may
have been renamed since.)"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import itertools
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE_DIRS = ("dp_agent", "envs", "gui")  # where the project's classes are defined
PATH_PREFIXES = ("dp_agent/", "benchmarks/", "demos/", "docs/", "envs/", "gui/", "tests/", ".ci/")
# Capitalised names cited with a member that are not this project's classes.
EXTERNAL = {
    *("LeRobotDataset", "DDIMScheduler", "DDIMSchedulerOutput", "DDPMScheduler", "EMAModel"),
    *("AsyncVectorEnv", "SyncVectorEnv", "Box", "Dict", "Path", "DistributedDataParallel"),
}
FILE_SUFFIXES = {"md", "py", "sh", "toml", "json", "hdf5", "safetensors", "png", "txt"}
README_MAX_LINES = 250


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def class_members(node: ast.ClassDef) -> set[str]:
    """Methods, properties, class attributes, dataclass fields and ``self.x = ...`` attributes."""
    members = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            members.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members.add(item.target.id)
        elif isinstance(item, ast.Assign):
            members |= {t.id for t in item.targets if isinstance(t, ast.Name)}
    for sub in ast.walk(node):
        targets = sub.targets if isinstance(sub, ast.Assign) else []
        targets += [sub.target] if isinstance(sub, ast.AnnAssign) else []
        for target in targets:
            for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                    members |= {t.attr} if t.value.id == "self" else set()
    return members


@cache
def project_classes() -> dict[str, list[set[str]]]:
    """Class name -> the member names of each class of that name in the project's code (methods,
    properties, class attributes and dataclass fields), read from the source, not imported."""
    found: dict[str, list[tuple[set[str], list[str]]]] = {}
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    members = class_members(node)
                    bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                    found.setdefault(node.name, []).append((members, bases))
    resolved: dict[str, list[set[str]]] = {}
    for name, variants in found.items():  # members inherited from the project's own bases
        resolved[name] = []
        for members, bases in variants:
            inherited = set(members)
            for base in bases:
                for base_members, _ in found.get(base, []):
                    inherited |= base_members
            resolved[name].append(inherited)
    return resolved


def code_spans(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(inline code spans, (language, body) of each fenced block)."""
    blocks = [(m[1], m[2]) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    prose = re.sub(r"^(    .*\n)+", "", prose, flags=re.M)  # indented code: checked as blocks
    blocks += [("", m[0]) for m in re.finditer(r"(?:^    .*\n)+", text, re.M)]
    return re.findall(r"`([^`\n]+)`", prose), blocks


def expand_braces(token: str) -> list[str]:
    """``a{b,c}d`` -> [abd, acd] (the shell's brace expansion, for cited file families)."""
    parts = re.split(r"\{([^{}]*,[^{}]*)\}", token)
    choices = [p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def cited_paths(spans: list[str], blocks: list[tuple[str, str]]) -> set[str]:
    """Repository paths named in code: tokens starting with a top-level folder of the project."""
    tokens = [t for s in spans for t in s.split()]
    tokens += [t for _, body in blocks for t in body.split()]
    paths = set()
    for token in tokens:
        token = token.strip("\"'(),;:").split("::")[0]
        if not token.startswith(PATH_PREFIXES) or re.search(r"[<*$]|-v\d", token):
            continue  # a placeholder, a glob, a variable or an env id (dp_agent/PushT-v0)
        paths.update(expand_braces(token))
    return paths


def resolve_dotted(name: str) -> str | None:
    """None if ``dp_agent.a.b.c`` imports as a module plus attributes, else what is missing."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and not module_name.startswith(e.name):
                return f"{name}: importing {module_name} needs {e.name}"
            continue
        for i, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):
                return f"{name}: {'.'.join(parts[:i])} has no {attr!r}"
            obj = getattr(obj, attr)
        return None
    return f"{name}: no module {parts[0]!r}"


def check_spans(spans: list[str]) -> list[str]:
    """What is wrong with the code names: dotted ``dp_agent.`` names, ``Class.member`` and
    classes named alone."""
    problems = []
    classes = project_classes()
    for span in spans:
        head = re.match(r"[A-Za-z_][\w.]*", span)
        if not head:
            continue
        name = head[0].rstrip(".")
        if name.startswith("dp_agent."):
            if (problem := resolve_dotted(name)) is not None:
                problems.append(problem)
            continue
        parts = name.split(".")
        if re.fullmatch(r"_?[A-Z]\w*[a-z]\w*", span) and span not in EXTERNAL | set(classes):
            problems.append(f"{span}: no class {span} in {', '.join(CODE_DIRS)}")
            continue  # a class named alone (ConditionalUnet1D, KeepOut)
        if len(parts) < 2 or not parts[0][0].isupper() or parts[0] in EXTERNAL:
            continue  # an instance (agent.predict), a module alias or another library's class
        if parts[-1] in FILE_SUFFIXES:
            continue  # a file name: CHANGELOG.md
        if parts[0] not in classes:
            problems.append(f"{name}: no class {parts[0]} in {', '.join(CODE_DIRS)}")
        elif not any(parts[1] in members for members in classes[parts[0]]):
            problems.append(f"{name}: {parts[0]} has no {parts[1]!r}")
    return problems


def check_imports(blocks: list[tuple[str, str]]) -> list[str]:
    """The ``dp_agent`` imports of the Python examples resolve."""
    problems = []
    for language, body in blocks:
        if language != "python":
            continue
        for node in ast.walk(ast.parse(body)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dp_agent":
                for alias in node.names:
                    problem = resolve_dotted(f"{node.module}.{alias.name}")
                    problems += [problem] if problem else []
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "dp_agent":
                        problem = resolve_dotted(alias.name)
                        problems += [problem] if problem else []
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_code_name_a_document_cites_exists(doc):
    spans, blocks = code_spans(doc.read_text())
    assert check_spans(spans) + check_imports(blocks) == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_file_a_document_cites_exists(doc):
    spans, blocks = code_spans(doc.read_text())
    assert sorted(p for p in cited_paths(spans, blocks) if not (ROOT / p).exists()) == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_in_a_document_resolves(doc):
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]
    assert [t for t in local if not (doc.parent / t).exists()] == []


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to docs/"


def repository_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every plain file
        skip = {".venv", "build", ".git", "runs", "__pycache__"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def test_nothing_in_the_repository_refers_to_files_outside_it():
    # the words are put together here so that this file does not match itself
    outside = [".." + "/shared", "shared/" + "DESIGN.md", "shared/" + "STYLE.md"]
    found = []
    for path in repository_files():
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue  # binary: demo files, checkpoints, pictures
        text = data.decode("utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {word}" for word in outside if word in text]
    assert found == []


def load_report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("doc", sorted((ROOT / "docs" / "results").glob("*.md")), ids=doc_id)
def test_each_measured_section_has_one_begin_and_one_end_marker(doc):
    text = doc.read_text()
    begins = re.findall(r"^<!-- measured: (.*) -->$", text, re.M)
    ends = re.findall(r"^<!-- end measured: (.*) -->$", text, re.M)
    assert begins == ends and len(set(begins)) == len(begins)


def test_a_rerun_replaces_its_own_section_and_nothing_else(tmp_path):
    report = load_report()
    path = tmp_path / "demo.md"
    path.write_text("# Demo\n\nWhat the tables show.\n\n## Earlier runs\n\nOld numbers.\n")
    report.write_result("demo", "A", "| a |\n|---|\n| 1 |", folder=tmp_path, command="cmd A")
    report.write_result("demo", "B", "| b |\n|---|\n| 2 |", folder=tmp_path, command="cmd B")
    report.write_result("demo", "A", "| a |\n|---|\n| 3 |", "a note", folder=tmp_path)
    text = path.read_text()
    assert text.startswith("# Demo\n\nWhat the tables show.\n")
    assert text.index("### A") < text.index("### B") < text.index("## Earlier runs")
    assert "| 3 |" in text and "| 1 |" not in text and "| 2 |" in text and "a note" in text
    assert text.count("Machine: ") == 2 and "Old numbers." in text
