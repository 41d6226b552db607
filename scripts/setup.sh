#!/usr/bin/env bash
# Create a virtual environment with the CPU build of torch and tpexplain installed (editable).
# Usage: bash scripts/setup.sh [VENV_DIR]   (default .venv)
set -euo pipefail
venv="${1:-.venv}"
cd "$(dirname "$0")/.."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# torch first, pinned to the CPU build: a bare `torch` requirement could pull a multi-GB CUDA build.
"$venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0
"$venv/bin/pip" install -q --disable-pip-version-check -e ".[test]"
