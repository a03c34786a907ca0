#!/usr/bin/env bash
# Sets up .venv (the CPU build of torch first, then dp-agent with its [dev] extra), checks
# formatting and lint, and runs the test suite headless.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"  # first: a bare torch requirement would pull a CUDA build
python -m pip install -q -e ".[dev]"
ruff format --check .
ruff check .
export QT_QPA_PLATFORM=offscreen SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy
python -m pytest -q -n "${PYTEST_WORKERS:-auto}" "$@"  # one test process per core
