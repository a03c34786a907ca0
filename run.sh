#!/usr/bin/env bash
# Sets up .venv and starts the app with the shipped demos and pretrained policies; on a machine
# with no display it runs the headless quickstart instead (train, evaluate, write a denoising
# picture to runs/quickstart/).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"  # first: a bare torch requirement would pull a CUDA build
python -m pip install -q -e ".[gui]"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = "Darwin" ]; then
    exec dp-agent gui "$@"
else
    echo "no display found: running the headless quickstart" >&2
    exec dp-agent quickstart "$@"
fi
