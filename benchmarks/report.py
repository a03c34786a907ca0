"""Where a benchmark's table goes: ``docs/results/<name>.md``, in a section of its own that
names the command, the machine and the date, so that a re-run of the same measurement replaces
its section and leaves the rest of the file (the text around the tables) as it is.

    from report import add_results_option, write_result
    add_results_option(parser)  # --no-results: print only; --results-dir DIR
    write_result("planning", "umaze: execution and re-planning", table, notes="...", args=args)

A section is found by its title: the script builds the title from the arguments that define the
measurement (the task, the layouts), not from those that only change its precision (repeats).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
STARTED = datetime.datetime.now().astimezone()  # when the script imported this module
ENV_VARS = ("OMP_NUM_THREADS", "PYTEST_WORKERS", "CUDA_VISIBLE_DEVICES")
EARLIER = "## Earlier runs"  # a new section goes above this heading, where the file has one


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """``--no-results`` (print only) and ``--results-dir DIR`` (default docs/results)."""
    parser.add_argument(
        "--no-results", action="store_true", help="print the tables only; write no results file"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where NAME.md is written (docs/results)"
    )


def command_line() -> str:
    """The command as typed from the repository root: environment settings that change the
    measurement, then ``python benchmarks/<script> <arguments>``."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    env = [f"{k}={os.environ[k]}" for k in ENV_VARS if k in os.environ]
    argv, skip = [], False
    for arg in sys.argv[1:]:  # where the table goes is no part of the measurement
        if not skip and not arg.startswith("--results-dir"):
            argv.append(arg)
        skip = arg == "--results-dir"
    return " ".join([*env, shlex.join(["python", str(script), *argv])])


def _cpu() -> tuple[str, str]:
    """(model name, the vector extensions that decide these timings)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    isa = ["AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"]
    isa += ["VNNI"] * ("avx512_vnni" in flags) + ["native bf16"] * ("avx512_bf16" in flags)
    isa += ["AMX"] * ("amx_tile" in flags)
    return model, ", ".join(isa) if flags else "extensions unknown"


def _memory_gb() -> str:
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        return f"{kb / 2**20:.0f} GB"
    except (OSError, StopIteration, ValueError):
        return "memory unknown"


def _gpus() -> str:
    torch = sys.modules.get("torch")  # never imported here only to look
    if torch is not None and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return ", ".join(names)
    if torch is None and shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        return ", ".join(line.split(" (")[0] for line in out.splitlines() if line) or "no GPU"
    return "no GPU"


def machine() -> str:
    """One line: CPU, cores, vector extensions, memory, GPU, the versions that matter, load."""
    model, isa = _cpu()
    versions = [f"Python {platform.python_version()}"]
    for package in ("torch", "openvino", "onnxruntime"):
        module = sys.modules.get(package)
        if module is not None and hasattr(module, "__version__"):
            versions.append(f"{package} {module.__version__.split('-')[0]}")
    load = ""
    if hasattr(os, "getloadavg"):
        load = "; load average at the end {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min)".format(
            *os.getloadavg()
        )
    return (
        f"{model}, {os.cpu_count()} cores ({isa}), {_memory_gb()}, {_gpus()}; "
        f"{platform.system()} {platform.machine()}, {', '.join(versions)}{load}"
    )


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"; commit {head}" + (" with local changes" if dirty.strip() else "")


def _markers(title: str) -> tuple[str, str]:
    return f"<!-- measured: {title} -->", f"<!-- end measured: {title} -->"


def section(title: str, table: str, notes: str = "", command: str | None = None) -> str:
    """The Markdown of one measured section, between the markers that find it again."""
    begin, end = _markers(title)
    seconds = (datetime.datetime.now().astimezone() - STARTED).total_seconds()
    took = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    lines = [
        begin,
        f"### {title}",
        "",
        f"Command: `{command or command_line()}`  ",
        f"Machine: {machine()}  ",
        f"Date: {STARTED:%Y-%m-%d %H:%M %Z} (the run took {took}){_commit()}",
        "",
        table.strip(),
    ]
    if notes.strip():
        lines += ["", notes.strip()]
    return "\n".join([*lines, end])


def replace_section(text: str, title: str, new: str) -> str:
    """``text`` with the section titled ``title`` replaced by ``new``; a new title goes above
    the "Earlier runs" heading, or at the end."""
    begin, end = _markers(title)
    found = re.search(re.escape(begin) + r".*?" + re.escape(end), text, flags=re.S)
    if found:
        return text[: found.start()] + new + text[found.end() :]
    at = text.find("\n" + EARLIER + "\n")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + new + "\n"
    return text[: at + 1] + new + "\n\n" + text[at + 1 :]


def write_result(
    name: str,
    title: str,
    table: str,
    notes: str = "",
    *,
    args: argparse.Namespace | None = None,
    command: str | None = None,
    folder: Path = RESULTS,
) -> Path | None:
    """Write ``table`` (Markdown) as the section ``title`` of ``folder/<name>.md`` with the
    command, machine and date; returns the file, or None with ``--no-results``."""
    if args is not None and getattr(args, "no_results", False):
        return None
    folder = getattr(args, "results_dir", None) or folder
    path = Path(folder) / f"{name}.md"
    text = path.read_text() if path.exists() else f"# {name.replace('_', ' ').capitalize()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, title, section(title, table, notes, command)))
    print(
        f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {title}",
        file=sys.stderr,
    )
    return path
